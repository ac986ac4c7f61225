using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Models;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

/// <summary>Vector paths of the forward pass's small kernels against their scalar definitions, bit for bit.</summary>
[Trait("Category", "Kernels")]
public unsafe class ForwardKernelPathTests
{
    [Theory]
    [InlineData(RopeStyle.Neox, 64)]
    [InlineData(RopeStyle.Neox, 72)]   // half = 36: four pairs after the last full vector
    [InlineData(RopeStyle.Interleaved, 64)]
    public void RopeVectorPathEqualsTheScalarLoop(RopeStyle style, int headDim)
    {
        const int heads = 3;
        var rope = new Rope(headDim, 4096, 1e6, style);
        var random = new Random(headDim);
        foreach (int position in new[] { 0, 1, 17, 4095 })
        {
            float[] x = Enumerable.Range(0, heads * headDim).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
            float[] vector = (float[])x.Clone(), scalar = (float[])x.Clone();
            fixed (float* pv = vector, ps = scalar)
            {
                rope.Apply(pv, heads, position, vector: true);
                rope.Apply(ps, heads, position, vector: false);
            }
            Assert.Equal(scalar, vector);
            if (position > 0) Assert.NotEqual(x, vector);
        }
    }

    /// <summary>A NaN in a block sends it to the scalar reference, so even then the bytes are the reference's.</summary>
    [Theory]
    [InlineData(ActivationFormat.Q8_0)]
    [InlineData(ActivationFormat.Q8_1)]
    [InlineData(ActivationFormat.Q8_K)]
    public void BlocksWithNaNQuantizeAsTheReference(ActivationFormat format)
    {
        int k = 2 * ActivationQuantizer.BlockSize(format);
        var random = new Random(7);
        float[] x = Enumerable.Range(0, k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        x[3] = float.NaN;
        x[k - 1] = 1000; // the clean block's scale is unaffected by the other's NaN
        var expected = new byte[ActivationQuantizer.RowBytes(format, k)];
        Quantize.Row(ActivationQuantizer.TypeOf(format), x, expected);
        var actual = new byte[expected.Length];
        fixed (float* px = x) fixed (byte* pa = actual) ActivationQuantizer.Row256(format, px, pa, k);
        Assert.Equal(expected, actual);
    }

    /// <summary>Quantizing a row piece by piece (decode splits it between threads) gives the whole row's bytes.</summary>
    [Theory]
    [InlineData(ActivationFormat.Q8_0, 800)]
    [InlineData(ActivationFormat.Q8_K, 768)]
    public void PiecesQuantizeAsTheWholeRow(ActivationFormat format, int k)
    {
        var random = new Random(k);
        float[] x = Enumerable.Range(0, k).Select(_ => (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-2, 2)))).ToArray();
        var whole = new byte[ActivationQuantizer.RowBytes(format, k)];
        ActivationQuantizer.Row(format, x, whole);
        var pieces = new byte[whole.Length];
        int blockSize = ActivationQuantizer.BlockSize(format), blockBytes = ActivationQuantizer.BlockBytes(format);
        fixed (float* px = x) fixed (byte* pp = pieces)
            for (int first = 0; first < k; first += MatMul.PieceFloats)
                ActivationQuantizer.RowUnchecked(format, px + first, pp + first / blockSize * blockBytes, Math.Min(MatMul.PieceFloats, k - first));
        Assert.Equal(whole, pieces);
    }
}
