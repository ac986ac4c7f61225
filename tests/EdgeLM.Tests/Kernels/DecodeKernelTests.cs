using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The decode (one token) panel kernels at the edge of their 16-bit partial sums. Random data (the other panel tests) rarely comes near the bounds that the written-out decode
/// kernels rely on: every level at its maximum against activations all at -128 (Q8_K) or -127 (Q8_0) does.
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class DecodeKernelTests
{
    /// <summary>A weight whose quant bytes are all 0xFF (largest level, every Q5_0 fifth bit set) with finite half scales.</summary>
    private static (Tensor, NativeBuffer) MaximalWeight(GgmlType type, int k, int rows, byte quantByte = 0xFF)
    {
        var (w, buffer) = PanelTestSupport.RandomWeight(type, k, rows, 3, [0], normalBase: 0x2000);
        buffer.Span.Fill(quantByte);
        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        // Half fields: Q5_0 d at 0; Q4_K / Q5_K d, dmin at 0, 2; Q6_K d at 208. 0xFF elsewhere is the largest level
        // (Q5_K: every fifth bit set, level 31), the largest 6-bit Q4_K / Q5_K scale and min, and Q6_K scale -1.
        int[] halves = type switch { GgmlType.Q4_K or GgmlType.Q5_K => [0, 2], GgmlType.Q6_K => [208], _ => [0] };
        for (long b = 0; b < w.ByteLength / blockBytes; b++)
            foreach (int o in halves) *(ushort*)(buffer.Pointer + b * blockBytes + o) = (ushort)(0x3C00 + b % 7);
        return (w, buffer);
    }

    [Theory]
    [InlineData(GgmlType.Q5_0, 4864, 1)]
    [InlineData(GgmlType.Q5_0, 896, 5)]
    [InlineData(GgmlType.Q4_0, 896, 1)]
    [InlineData(GgmlType.Q8_0, 896, 1)]
    // Q4_0 level -8 everywhere; Q8_0 levels -128 and 127 (the largest |w| the sign trick and one-group runs must hold),
    // against activations of either sign.
    [InlineData(GgmlType.Q4_0, 896, 1, 0x00)]
    [InlineData(GgmlType.Q4_0, 4864, 1, 0xFF, 1f)]
    [InlineData(GgmlType.Q8_0, 4864, 1, 0x80)]
    [InlineData(GgmlType.Q8_0, 896, 1, 0x80, 1f)]
    [InlineData(GgmlType.Q8_0, 896, 1, 0x7F)]
    [InlineData(GgmlType.Q8_0, 896, 5, 0x7F, 1f)]
    public void BlockPanelDecodeIsExactAtMaximalLevels(GgmlType type, int k, int n, byte quantByte = 0xFF, float activation = -1f)
    {
        const int rows = 16;
        var (w, buffer) = MaximalWeight(type, k, rows, quantByte);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_0, k);
        var xq = new byte[rowBytes * n];
        var info = new byte[(long)k / 32 * RepackKernels.ActivationInfoBytes * n];
        var row = Enumerable.Repeat(activation, k).ToArray(); // all levels -127 or 127
        for (int t = 0; t < n; t++)
        {
            ActivationQuantizer.Row(ActivationFormat.Q8_0, row, xq.AsSpan((int)(t * rowBytes), (int)rowBytes));
            fixed (byte* px = xq, pi = info)
                RepackKernels.ActivationInfoRow(px + t * rowBytes, k / 32, pi + (long)t * (k / 32) * RepackKernels.ActivationInfoBytes);
        }
        Assert.Equal(unchecked((byte)(activation < 0 ? -127 : 127)), xq[2]);
        var expected = new float[n * rows];
        var scalar = new float[n * rows];
        var actual = new float[n * rows];
        fixed (byte* px = xq, pi = info)
        fixed (float* ps = scalar, pa = actual)
        {
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    expected[t * rows + r] = RepackKernels.ReferenceDot(type, w.Data + r * w.RowStride, px + t * rowBytes, k);
            RepackKernels.TileScalar(m, m.Data, rows / 8, px, rowBytes, pi, info.Length / n, n, ps, rows);
            RepackKernels.Tile(m, m.Data, rows / 8, px, rowBytes, pi, info.Length / n, n, pa, rows);
        }
        Assert.Contains(expected, v => v != 0);
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), scalar.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 4864, 1)]
    [InlineData(GgmlType.Q4_K, 1024, 5)]
    [InlineData(GgmlType.Q5_K, 4864, 1)]
    [InlineData(GgmlType.Q5_K, 1024, 5)]
    [InlineData(GgmlType.Q6_K, 4864, 1)]
    [InlineData(GgmlType.Q6_K, 1024, 5)]
    public void KPanelDecodeIsExactAtMaximalLevels(GgmlType type, int k, int n)
    {
        const int rows = 16;
        var (w, buffer) = MaximalWeight(type, k, rows);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_K, k);
        var xq = new byte[rowBytes * n];
        // Every level -128 (ggml's quantizer gives it to a block's largest negative magnitude), written directly:
        // this engine's quantizer stops at -127. Block: float d, 256 levels, 16 sums of 16 levels.
        fixed (byte* px = xq)
            for (long b = 0; b < xq.Length / KQuant.Q8BlockBytes; b++)
            {
                byte* block = px + b * KQuant.Q8BlockBytes;
                *(float*)block = 0.01f;
                new Span<byte>(block + KQuant.Q8Quants, 256).Fill(0x80);
                for (int g = 0; g < 16; g++) ((short*)(block + KQuant.Q8Bsums))[g] = 16 * -128;
            }
        var expected = new float[n * rows];
        var scalar = new float[n * rows];
        var actual = new float[n * rows];
        fixed (byte* px = xq)
        fixed (float* ps = scalar, pa = actual)
        {
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    expected[t * rows + r] = KPanelKernels.ReferenceDot(type, w.Data + r * w.RowStride, px + t * rowBytes, k);
            KPanelKernels.TileScalar(m, m.Data, rows / 8, px, rowBytes, n, ps, rows);
            KPanelKernels.Tile(m, m.Data, rows / 8, px, rowBytes, n, pa, rows);
        }
        Assert.Contains(expected, v => v != 0);
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), scalar.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
    }
}
