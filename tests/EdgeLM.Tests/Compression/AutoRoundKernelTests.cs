using EdgeLM.Compression.Methods;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Compression;

/// <summary>The vector paths of autoround's descent and awq's output error against their scalar references, and autoround's blocking.</summary>
public class AutoRoundKernelTests
{
    private static float[] RandomFloats(Random rng, int n, float range = 1) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * range).ToArray();

    [Theory]
    [Trait("Category", "Kernels")]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(37)]
    [InlineData(300)]
    public void AccumulateTileRowsMatchesScalarReference(int changes)
    {
        var rng = new Random(5 + changes);
        const int tileRows = 400, firstRow = 1000;
        var tile = RandomFloats(rng, tileRows * LinearAlgebra.TileWidth);
        var columns = Enumerable.Range(firstRow, tileRows).OrderBy(_ => rng.Next()).Take(changes).Order().ToArray();
        var amounts = RandomFloats(rng, changes, 0.3f);
        var start = RandomFloats(rng, LinearAlgebra.TileWidth);
        var simd = start.ToArray();
        var scalar = start.ToArray();
        LinearAlgebra.AccumulateTileRows(simd, tile, columns, amounts, firstRow);
        LinearAlgebra.AccumulateTileRowsScalar(scalar, tile, columns, amounts, firstRow);
        Assert.Equal(scalar, simd);
        // And it is the weighted sum of the named rows, up to rounding.
        for (int j = 0; j < LinearAlgebra.TileWidth; j++)
        {
            double expected = start[j];
            for (int k = 0; k < changes; k++) expected += amounts[k] * (double)tile[(columns[k] - firstRow) * LinearAlgebra.TileWidth + j];
            Assert.True(Math.Abs(simd[j] - expected) < 1e-4, $"column {j}: {simd[j]} vs {expected}");
        }
    }

    [Fact]
    [Trait("Category", "Kernels")]
    public void StepMatchesScalarReference()
    {
        const int cols = 203; // not a multiple of the vector width: the scalar tail runs too
        var rng = new Random(17);
        var weights = RandomFloats(rng, cols);
        var scale = Enumerable.Range(0, cols).Select(c => c % 29 == 0 ? 0f : 0.05f + (float)rng.NextDouble() * 0.1f).ToArray();
        var offset = Enumerable.Range(0, cols).Select(c => -8 * scale[c]).ToArray();
        var basis = Enumerable.Range(0, cols).Select(c => scale[c] != 0 ? (weights[c] - offset[c]) / scale[c] : 0).ToArray();
        // Some gradients exactly zero (V must not move) and some rows of V at the clamp.
        var gradient = Enumerable.Range(0, cols).Select(c => c % 7 == 0 ? 0f : (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var v = Enumerable.Range(0, cols).Select(c => c % 11 == 0 ? 0.5f : c % 13 == 0 ? -0.5f : (float)(rng.NextDouble() - 0.5) * 0.9f).ToArray();
        var levels = basis.Select(b => Math.Clamp(MathF.Round(b), 0f, 15f)).ToArray();
        var error = Enumerable.Range(0, cols).Select(c => weights[c] - (scale[c] * levels[c] + offset[c])).ToArray();

        (float[] V, float[] Levels, float[] Error, int[] Columns, float[] Amounts) Run(bool simd)
        {
            var (vv, ll, ee) = (v.ToArray(), levels.ToArray(), error.ToArray());
            var columns = new int[cols];
            var amounts = new float[cols];
            var row = new AutoRoundQuantizer.RowState(weights, scale, offset, basis, gradient, vv, ll, ee);
            int n = simd ? AutoRoundQuantizer.Step(row, 0.3f, 0, 15, columns, amounts)
                : AutoRoundQuantizer.StepScalar(row, 0, 0.3f, 0, 15, columns, amounts);
            return (vv, ll, ee, columns[..n], amounts[..n]);
        }
        var a = Run(simd: true);
        var b = Run(simd: false);
        Assert.NotEmpty(b.Columns);
        Assert.Equal(b.V, a.V);
        Assert.Equal(b.Levels, a.Levels);
        Assert.Equal(b.Error, a.Error);
        Assert.Equal(b.Columns, a.Columns);
        Assert.Equal(b.Amounts, a.Amounts);
    }

    [Fact]
    public void ColumnTilesHoldEveryElement()
    {
        int d = LinearAlgebra.TileRows + 64; // two bands, the second short
        var m = new double[(long)d * d];
        for (long i = 0; i < m.Length; i++) m[i] = i % 9973;
        var tiles = LinearAlgebra.ToColumnTiles(m, d, threads: 2);
        var rng = new Random(2);
        for (int probe = 0; probe < 5000; probe++)
        {
            int i = rng.Next(d), j = rng.Next(d);
            Assert.Equal((float)m[(long)i * d + j], tiles[LinearAlgebra.TileOffset(d, i, j / LinearAlgebra.TileWidth) + j % LinearAlgebra.TileWidth]);
        }
        Assert.Throws<ArgumentException>(() => LinearAlgebra.ToColumnTiles(new double[40 * 40], 40));
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, 256)]
    [InlineData(GgmlType.Q4_0, 1088)] // two bands of G's tiled layout
    [InlineData(GgmlType.Q6_K, 256)]
    public void BytesDoNotDependOnTheLockstepBlock(GgmlType type, int cols)
    {
        var layer = new SyntheticLayer(23, cols, seed: 61, calibrationRows: 200, heldOutRows: 4);
        var stats = layer.Stats();
        var gram = ActivationStats.Gram(stats.Samples, stats.SampleCount, layer.Cols, 1.0 / stats.SampleCount);
        byte[] Run(int threads, int rowBlock)
        {
            var bytes = new byte[layer.Rows * GgmlTypeInfo.RowBytes(type, layer.Cols)];
            AutoRoundQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, gram, bytes, 30, 1f / 30, threads, rowBlock);
            return bytes;
        }
        var whole = Run(1, 128);
        Assert.Equal(whole, Run(3, 5));
        Assert.Equal(whole, Run(2, 1));
    }

    [Theory]
    [Trait("Category", "Kernels")]
    [InlineData(8, 64, 128)]
    [InlineData(7, 1056, 5)] // a row tail, a short column chunk and an odd sample count
    [InlineData(3, 40, 2)]
    public void BlockedOutputErrorMatchesScalarReference(int rows, int cols, int n)
    {
        var rng = new Random(rows * 1000 + cols + n);
        var error = RandomFloats(rng, rows * cols, 0.01f);
        var x = RandomFloats(rng, n * cols, 3);
        double blocked = LinearAlgebra.OutputError(error, rows, x, n, cols);
        double scalar = LinearAlgebra.OutputErrorScalar(error, rows, x, n, cols);
        double exact = 0;
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < n; s++)
            {
                double y = 0;
                for (int c = 0; c < cols; c++) y += (double)error[r * cols + c] * x[s * cols + c];
                exact += y * y;
            }
        Assert.True(exact > 0);
        Assert.True(Math.Abs(blocked - exact) < 1e-4 * exact, $"blocked {blocked} vs {exact}");
        Assert.True(Math.Abs(scalar - exact) < 1e-4 * exact, $"scalar {scalar} vs {exact}");
    }
}
