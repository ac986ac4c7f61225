using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

/// <summary>The activation quantizers' inlined float-to-half against the reference <see cref="HalfPrecision.ToF16"/>.</summary>
[Trait("Category", "Kernels")]
public class ActivationHalfTests
{
    [Fact]
    public void ToF16MatchesReferenceOnAStrideOfAllFloatBitPatterns()
    {
        // An odd stride visits every exponent (subnormal, normal, overflow, inf, NaN) with varied mantissas and signs.
        for (ulong bits = 0; bits <= uint.MaxValue; bits += 4093)
            AssertSame(BitConverter.UInt32BitsToSingle((uint)bits));
    }

    [Fact]
    public void ToF16MatchesReferenceAtRoundingAndRangeEdges()
    {
        float[] edges =
        [
            0f, -0f, 65504f, 65519.996f, 65520f, 65536f, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, 6.1035156e-5f, 6.1035152e-5f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f,
            1f + 1f / 2048, 1f + 3f / 2048, 1f + 1f / 4096, float.Epsilon, 1e-45f, 3e-8f,
        ];
        foreach (float e in edges)
        {
            AssertSame(e);
            AssertSame(-e);
            uint bits = BitConverter.SingleToUInt32Bits(e);
            // The neighbours decide ties: one ulp either side of each edge.
            AssertSame(BitConverter.UInt32BitsToSingle(bits + 1));
            if (bits != 0) AssertSame(BitConverter.UInt32BitsToSingle(bits - 1));
        }
        // Every half-way point between consecutive halves (ties go to even) and its float neighbours.
        for (int h = 0; h < 0x7C00; h++)
        {
            float low = HalfPrecision.FromF16((ushort)h), high = HalfPrecision.FromF16((ushort)(h + 1));
            float middle = (float)(((double)low + high) / 2);
            uint m = BitConverter.SingleToUInt32Bits(middle);
            AssertSame(middle);
            AssertSame(BitConverter.UInt32BitsToSingle(m + 1));
            AssertSame(BitConverter.UInt32BitsToSingle(m - 1));
        }
    }

    private static void AssertSame(float value)
    {
        ushort expected = HalfPrecision.ToF16(value), actual = ActivationQuantizer.ToF16(value);
        if (expected != actual)
            Assert.Fail($"ToF16({value:R}, bits 0x{BitConverter.SingleToUInt32Bits(value):X8}): 0x{actual:X4}, reference 0x{expected:X4}");
    }
}
