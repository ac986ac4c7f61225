using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Quantization;

public class HalfPrecisionTests
{
    /// <summary>
    /// ggml's portable fp32 -> fp16 (ggml_compute_fp32_to_fp16, after Maratyszcza's FP16 library), written out here as
    /// an independent oracle: it rounds through float arithmetic rather than through System.Half.
    /// </summary>
    private static ushort GgmlFp32ToFp16(float f)
    {
        float scaleToInf = BitConverter.UInt32BitsToSingle(0x77800000);
        float scaleToZero = BitConverter.UInt32BitsToSingle(0x08800000);
        float @base = MathF.Abs(f) * scaleToInf * scaleToZero;
        uint w = BitConverter.SingleToUInt32Bits(f);
        uint shl1W = w + w;
        uint sign = w & 0x80000000;
        uint bias = shl1W & 0xFF000000;
        if (bias < 0x71000000) bias = 0x71000000;
        @base = BitConverter.UInt32BitsToSingle((bias >> 1) + 0x07800000) + @base;
        uint bits = BitConverter.SingleToUInt32Bits(@base);
        uint expBits = (bits >> 13) & 0x00007C00;
        uint mantissaBits = bits & 0x00000FFF;
        uint nonSign = expBits + mantissaBits;
        return (ushort)((sign >> 16) | (shl1W > 0xFF000000 ? 0x7E00 : nonSign));
    }

    [Fact]
    public void F16MatchesGgmlOnRandomAndEdgeBitPatterns()
    {
        var random = new Random(42);
        var candidates = new List<uint>
        {
            0, 0x80000000, 0x3F800000, 0x477FE000, 0x477FF000, 0x477FEFFF, 0x47800000, 0x7F800000, 0xFF800000,
            0x33000000, 0x33000001, 0x337FFFFF, 0x38800000, 0x387FC000, 0x00000001, 0x7F7FFFFF,
        };
        for (int i = 0; i < 200_000; i++) candidates.Add((uint)random.NextInt64(0, 1L << 32));
        // Exact ties between two fp16 values (13 dropped bits = 0x1000) in the normal and subnormal ranges.
        for (uint m = 0; m < 64; m++) { candidates.Add(0x3F801000 | (m << 13)); candidates.Add(0x36001000 | (m << 13)); }

        foreach (uint bits in candidates)
        {
            float f = BitConverter.UInt32BitsToSingle(bits);
            Assert.True(GgmlFp32ToFp16(f) == HalfPrecision.ToF16(f), $"0x{bits:X8}: ggml 0x{GgmlFp32ToFp16(f):X4}, ours 0x{HalfPrecision.ToF16(f):X4}");
        }
    }

    [Fact]
    public void F16DecodesEveryPatternExactly()
    {
        for (int h = 0; h < 65536; h++)
        {
            float f = HalfPrecision.FromF16((ushort)h);
            if (float.IsNaN(f)) continue;
            // Every finite or infinite half value converts back to itself.
            Assert.Equal((ushort)h, HalfPrecision.ToF16(f));
        }
    }

    [Theory]
    [InlineData(0x3F800000u, 0x3F80)]   // 1.0
    [InlineData(0x3F808000u, 0x3F80)]   // tie, even stays
    [InlineData(0x3F818000u, 0x3F82)]   // tie, odd rounds up
    [InlineData(0x3F808001u, 0x3F81)]   // above tie
    [InlineData(0xBF80FFFFu, 0xBF81)]   // negative rounds by magnitude
    [InlineData(0x7F7FFFFFu, 0x7F80)]   // largest float rounds to infinity
    [InlineData(0x00000001u, 0x0000)]   // subnormal rounds, not flushed: smallest goes to zero
    [InlineData(0x00018000u, 0x0002)]   // subnormal tie to even
    [InlineData(0x7F800001u, 0x7FC0)]   // signalling NaN becomes quiet
    [InlineData(0xFF812345u, 0xFFC1)]   // payload's top bits kept, quiet bit set
    public void Bf16RoundsToNearestEvenAndQuietsNaN(uint floatBits, int expected)
    {
        Assert.Equal((ushort)expected, HalfPrecision.ToBf16(BitConverter.UInt32BitsToSingle(floatBits)));
    }

    [Fact]
    public void Bf16DecodesAsUpperHalfOfFloat32()
    {
        Assert.Equal(1f, HalfPrecision.FromBf16(0x3F80));
        Assert.Equal(-2f, HalfPrecision.FromBf16(0xC000));
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x12340000), HalfPrecision.FromBf16(0x1234));
    }

    [Fact]
    public void NearestIntRoundsHalfToEvenLikeTheMagicNumberTrick()
    {
        Assert.Equal(0, ScaleSearch.NearestInt(0.5f));
        Assert.Equal(2, ScaleSearch.NearestInt(1.5f));
        Assert.Equal(2, ScaleSearch.NearestInt(2.5f));
        Assert.Equal(0, ScaleSearch.NearestInt(-0.5f));
        Assert.Equal(-2, ScaleSearch.NearestInt(-1.5f));
        Assert.Equal(-2, ScaleSearch.NearestInt(-2.5f));
        Assert.Equal(3, ScaleSearch.NearestInt(3.4999998f));
        var random = new Random(3);
        for (int i = 0; i < 100_000; i++)
        {
            float v = (float)((random.NextDouble() - 0.5) * 8_000_000);
            Assert.Equal((int)MathF.Round(v, MidpointRounding.ToEven), ScaleSearch.NearestInt(v));
        }
    }
}
