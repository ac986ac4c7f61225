using EdgeLM.Compression;
using EdgeLM.Compression.Methods;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Compression;

/// <summary>The calibrated methods split their work over threads; the bytes they write must not depend on how many.</summary>
public class ParallelQuantizationTests(CalibrationFixture fixture) : IClassFixture<CalibrationFixture>
{
    // 37 rows and 45 columns are not multiples of any group, band or tile size the methods use.
    private static SyntheticLayer Layer() => new(37, 256, seed: 43, calibrationRows: 300, heldOutRows: 8);

    private static byte[] Run(GgmlType type, Action<byte[]> quantize, SyntheticLayer layer)
    {
        var bytes = new byte[layer.Rows * GgmlTypeInfo.RowBytes(type, layer.Cols)];
        quantize(bytes);
        return bytes;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, false)]
    [InlineData(GgmlType.Q4_0, true)]
    [InlineData(GgmlType.Q4_K, false)]
    public void GptqBytesDoNotDependOnThreads(GgmlType type, bool actOrder)
    {
        var layer = Layer();
        var h = layer.Stats().Hessian();
        var one = Run(type, b => GptqQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, h, b, actOrder, threads: 1), layer);
        var three = Run(type, b => GptqQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, h, b, actOrder, threads: 3), layer);
        Assert.Equal(one, three);
        // Rows are independent given H: the first 20 rows alone (another split into row groups) give the same bytes.
        int prefix = 20 * (int)GgmlTypeInfo.RowBytes(type, layer.Cols);
        var part = new byte[prefix];
        GptqQuantizer.QuantizeLayer(type, layer.Weights.AsSpan(0, 20 * layer.Cols), layer.Cols, h, part, actOrder, threads: 2);
        Assert.Equal(one.AsSpan(0, prefix).ToArray(), part);
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q6_K)]
    public void AutoRoundBytesDoNotDependOnThreads(GgmlType type)
    {
        var layer = Layer();
        var stats = layer.Stats();
        var gram = ActivationStats.Gram(stats.Samples, stats.SampleCount, layer.Cols, 1.0 / stats.SampleCount);
        var one = Run(type, b => AutoRoundQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, gram, b, 50, 1f / 50, threads: 1), layer);
        var three = Run(type, b => AutoRoundQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, gram, b, 50, 1f / 50, threads: 3), layer);
        Assert.Equal(one, three);
        // Every row keeps the best V it saw, V = 0 included: never worse than zero steps on the calibration data.
        var zero = Run(type, b => AutoRoundQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, gram, b, 0, 1f, threads: 2), layer);
        double CalibrationError(byte[] bytes)
        {
            var decoded = layer.Decode(type, bytes);
            for (int i = 0; i < decoded.Length; i++) decoded[i] = layer.Weights[i] - decoded[i];
            return LinearAlgebra.OutputError(decoded, layer.Rows, stats.Samples, stats.SampleCount, layer.Cols);
        }
        double trained = CalibrationError(one), untrained = CalibrationError(zero);
        Assert.True(trained < untrained, $"{type}: 50 steps {trained:G6} vs 0 steps {untrained:G6}");
    }

    [Fact]
    public void AwqSearchDoesNotDependOnThreads()
    {
        var layer = Layer();
        var stats = layer.Stats();
        var members = new[] { new AwqQuantizer.GroupMember(layer.Weights, GgmlType.Q4_0) };
        var one = AwqQuantizer.SearchScales(members, layer.Cols, stats.MeanAbs(), stats.Samples, 64, out float a1, threads: 1);
        var three = AwqQuantizer.SearchScales(members, layer.Cols, stats.MeanAbs(), stats.Samples, 64, out float a3, threads: 3);
        Assert.Equal(a1, a3);
        Assert.Equal(one, three);
    }

    [Fact]
    public void GramMatchesTheNaiveProductForAnyThreadCount()
    {
        const int n = 19, d = 45;
        var rng = new Random(3);
        var x = Enumerable.Range(0, n * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var one = ActivationStats.Gram(x, n, d, 0.5, threads: 1);
        var three = ActivationStats.Gram(x, n, d, 0.5, threads: 3);
        Assert.Equal(one, three);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += (double)x[k * d + i] * x[k * d + j];
                Assert.Equal(0.5 * s, one[i * d + j], 10);
            }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(45)]
    [InlineData(70)]
    public void UpperCholeskyOfInverseFactorsTheInverse(int d)
    {
        // H = AᵀA + I is symmetric positive definite; U must be upper with UᵀU·H = I.
        var rng = new Random(d);
        var a = Enumerable.Range(0, d * d).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var h = new double[d * d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = i == j ? 1 : 0;
                for (int k = 0; k < d; k++) s += a[k * d + i] * a[k * d + j];
                h[i * d + j] = s;
            }
        var u1 = LinearAlgebra.UpperCholeskyOfInverse((double[])h.Clone(), d, "test", threads: 1);
        var u3 = LinearAlgebra.UpperCholeskyOfInverse((double[])h.Clone(), d, "test", threads: 3);
        Assert.Equal(u1, u3);
        for (int i = 0; i < d; i++)
        {
            Assert.True(u1[i * d + i] > 0);
            for (int j = 0; j < i; j++) Assert.Equal(0f, u1[i * d + j]);
        }
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                // (UᵀU·H)[i, j] = Σ_k Σ_m U[m,i] U[m,k] H[k,j]
                double s = 0;
                for (int k = 0; k < d; k++)
                {
                    double uu = 0;
                    for (int m = 0; m < d; m++) uu += (double)u1[m * d + i] * u1[m * d + k];
                    s += uu * h[k * d + j];
                }
                Assert.Equal(i == j ? 1.0 : 0.0, s, 3);
            }
    }

    [Fact]
    public void NotPositiveDefiniteIsAClearError()
    {
        var h = new double[] { 1, 2, 2, 1 };
        var e = Assert.Throws<InvalidDataException>(() => LinearAlgebra.UpperCholeskyOfInverse(h, 2, "blk.0.ffn_down.weight", threads: 2));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
    }

    [Theory]
    [InlineData("gptq")]
    [InlineData("autoround")]
    public void QuantizedFileIsTheSameForOneAndTwoThreads(string method)
    {
        using var model = ModelLoader.Load(fixture.ModelPath);
        var rng = new Random(9);
        var tokens = Enumerable.Range(0, 96).Select(_ => rng.Next(3, 500)).ToArray();
        var calibration = CalibrationSet.Collect(model, tokens, 48, 0, 96, null, 2);
        byte[] Quantize(int threads)
        {
            string output = fixture.NewPath($"{method}-t{threads}.gguf");
            ModelQuantizer.Quantize(model, output, new QuantizeOptions
            {
                FileType = LlamaFileTypes.Parse("q4_0"),
                Quantizer = TensorQuantizers.Create(method, calibration, autoRoundSteps: 20),
                Threads = threads,
            });
            return File.ReadAllBytes(output);
        }
        Assert.Equal(Quantize(1), Quantize(2));
    }
}
