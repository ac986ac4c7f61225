using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLM.Compression.Methods;

/// <summary>The few dense operations the calibration methods need, on row-major arrays.</summary>
internal static class LinearAlgebra
{
    /// <summary>Rows of a triangular matrix handled together, so each row they read is reused from cache that many times.</summary>
    private const int RowGroup = 8;

    /// <summary>
    /// Runs body(0..count-1) on up to <paramref name="threads"/> threads. Callers give every index a fixed piece of
    /// work whose arithmetic does not depend on which thread runs it, so results are identical for any thread count.
    /// </summary>
    public static void For(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count <= 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        try
        {
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // Callers expect the one-line exception of the failing piece, not a wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            throw;
        }
    }

    /// <summary>
    /// In-place lower Cholesky factor of the symmetric positive definite d x d matrix a (upper triangle left as is),
    /// computed row by row (L[i,j] = (a[i,j] - L[i,:j]·L[j,:j]) / L[j,j]). Rows are taken in groups that sweep the
    /// finished rows together, so the factor is read from memory d/8 times instead of d times; the groups of one
    /// band are independent and run in parallel.
    /// </summary>
    public static void CholeskyLower(double[] a, int d, string what, int threads = 1)
    {
        int band = RowGroup * Math.Max(1, threads);
        for (int first = 0; first < d; first += band)
        {
            int bandEnd = Math.Min(d, first + band);
            // Columns before the band depend only on finished rows: each group of the band fills them independently.
            For((bandEnd - first + RowGroup - 1) / RowGroup, threads, g =>
            {
                int r0 = first + g * RowGroup, r1 = Math.Min(bandEnd, r0 + RowGroup);
                for (int j = 0; j < first; j++)
                {
                    var rowJ = a.AsSpan(j * d, j);
                    double diagonal = a[(long)j * d + j];
                    for (int i = r0; i < r1; i++)
                        a[(long)i * d + j] = (a[(long)i * d + j] - Dot(a.AsSpan(i * d, j), rowJ)) / diagonal;
                }
            });
            // The band's own triangle, in order.
            for (int i = first; i < bandEnd; i++)
            {
                for (int j = first; j < i; j++)
                    a[(long)i * d + j] = (a[(long)i * d + j] - Dot(a.AsSpan(i * d, j), a.AsSpan(j * d, j))) / a[(long)j * d + j];
                var rowI = a.AsSpan(i * d, i);
                double s = a[(long)i * d + i] - Dot(rowI, rowI);
                if (!(s > 0)) throw new InvalidDataException($"{what}: the calibration Hessian is not positive definite (too few or degenerate calibration samples)");
                a[(long)i * d + i] = Math.Sqrt(s);
            }
        }
    }

    /// <summary>
    /// The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) that GPTQ walks column by column. With P the reversal
    /// permutation and PHP = L·Lᵀ, V = PLP is upper and H = V·Vᵀ, so H⁻¹ = V⁻ᵀV⁻¹ and U = V⁻¹ = P·L⁻¹·P: one Cholesky
    /// and one triangular inverse (d³/3 multiply-adds) instead of factoring, inverting and factoring again.
    /// <paramref name="h"/> is overwritten.
    /// </summary>
    public static float[] UpperCholeskyOfInverse(double[] h, int d, string what, int threads = 1)
    {
        // Reverse rows and columns in place: element (i, j) swaps with (d-1-i, d-1-j).
        long total = (long)d * d;
        for (long k = 0; k < total / 2; k++) (h[k], h[total - 1 - k]) = (h[total - 1 - k], h[k]);
        CholeskyLower(h, d, what, threads);
        var inverseT = InverseLowerTransposed(h, d, threads);
        // U[i, j] = Linv[d-1-i, d-1-j] = inverseT[d-1-j, d-1-i] for j >= i.
        var upper = new float[total];
        For(d, threads, i =>
        {
            var row = upper.AsSpan(i * d, d);
            for (int j = i; j < d; j++) row[j] = (float)inverseT[(long)(d - 1 - j) * d + (d - 1 - i)];
        });
        return upper;
    }

    /// <summary>
    /// (L⁻¹)ᵀ of a lower triangular L (only its lower triangle is read): row j holds column j of L⁻¹, found by forward
    /// substitution. Columns are solved in groups that share each row of L they read.
    /// </summary>
    private static double[] InverseLowerTransposed(double[] l, int d, int threads)
    {
        var t = new double[(long)d * d];
        For((d + RowGroup - 1) / RowGroup, threads, g =>
        {
            int c0 = g * RowGroup, c1 = Math.Min(d, c0 + RowGroup);
            for (int i = c0; i < d; i++)
            {
                double diagonal = l[(long)i * d + i];
                for (int c = c0; c < c1 && c <= i; c++)
                {
                    // m[i] = (δ(i,c) - Σ_{k=c}^{i-1} L[i,k]·m[k]) / L[i,i], m = column c of L⁻¹ = row c of t.
                    double s = Dot(l.AsSpan(i * d + c, i - c), t.AsSpan(c * d + c, i - c));
                    t[(long)c * d + i] = ((i == c ? 1 : 0) - s) / diagonal;
                }
            }
        });
        return t;
    }

    // Four accumulators: one would wait on the latency of the previous add, a quarter of the adder's throughput.
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        int i = 0;
        int w = Vector<double>.Count;
        if (Vector.IsHardwareAccelerated && a.Length >= w)
        {
            Vector<double> acc0 = Vector<double>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (; i <= a.Length - 4 * w; i += 4 * w)
            {
                acc0 += new Vector<double>(a[i..]) * new Vector<double>(b[i..]);
                acc1 += new Vector<double>(a[(i + w)..]) * new Vector<double>(b[(i + w)..]);
                acc2 += new Vector<double>(a[(i + 2 * w)..]) * new Vector<double>(b[(i + 2 * w)..]);
                acc3 += new Vector<double>(a[(i + 3 * w)..]) * new Vector<double>(b[(i + 3 * w)..]);
            }
            for (; i <= a.Length - w; i += w) acc0 += new Vector<double>(a[i..]) * new Vector<double>(b[i..]);
            s = Vector.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        for (; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float s = 0;
        int i = 0;
        int w = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated && a.Length >= w)
        {
            Vector<float> acc0 = Vector<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (; i <= a.Length - 4 * w; i += 4 * w)
            {
                acc0 += new Vector<float>(a[i..]) * new Vector<float>(b[i..]);
                acc1 += new Vector<float>(a[(i + w)..]) * new Vector<float>(b[(i + w)..]);
                acc2 += new Vector<float>(a[(i + 2 * w)..]) * new Vector<float>(b[(i + 2 * w)..]);
                acc3 += new Vector<float>(a[(i + 3 * w)..]) * new Vector<float>(b[(i + 3 * w)..]);
            }
            for (; i <= a.Length - w; i += w) acc0 += new Vector<float>(a[i..]) * new Vector<float>(b[i..]);
            s = Vector.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        for (; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>y -= alpha * x.</summary>
    public static void SubtractScaled(Span<float> y, ReadOnlySpan<float> x, float alpha)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && y.Length >= Vector<float>.Count)
        {
            var va = new Vector<float>(alpha);
            for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
                (new Vector<float>(y[i..]) - va * new Vector<float>(x[i..])).CopyTo(y[i..]);
        }
        for (; i < y.Length; i++) y[i] -= alpha * x[i];
    }

    /// <summary>Columns of one pass of <see cref="OutputError"/>: the samples' slices (n x 512 floats) stay in L2.</summary>
    private const int OutputErrorChunk = 512;

    /// <summary>
    /// Σ_samples ‖x·Eᵀ‖²: the squared output error of a layer whose weights are off by E (rows x cols) on inputs X
    /// (n x cols). A blocked product: 4 error rows x 2 samples accumulate in registers over a chunk of columns
    /// (6 loads per 8 multiply-adds instead of 2 per 1), chunk sums are added per output in column order, and each
    /// output is squared in double at the end. The order does not depend on anything but the shapes.
    /// </summary>
    public static double OutputError(ReadOnlySpan<float> error, int rows, ReadOnlySpan<float> x, int n, int cols)
    {
        if (!Vector256.IsHardwareAccelerated || cols % Vector256<float>.Count != 0) return OutputErrorScalar(error, rows, x, n, cols);
        const int rb = 4;
        var y = new float[rb * n];
        double total = 0;
        int r0 = 0;
        for (; r0 + rb <= rows; r0 += rb)
        {
            Array.Clear(y);
            for (int k0 = 0; k0 < cols; k0 += OutputErrorChunk)
            {
                int len = Math.Min(OutputErrorChunk, cols - k0);
                var e0 = error.Slice(r0 * cols + k0, len);
                var e1 = error.Slice((r0 + 1) * cols + k0, len);
                var e2 = error.Slice((r0 + 2) * cols + k0, len);
                var e3 = error.Slice((r0 + 3) * cols + k0, len);
                int s = 0;
                for (; s + 2 <= n; s += 2)
                {
                    var xa = x.Slice(s * cols + k0, len);
                    var xb = x.Slice((s + 1) * cols + k0, len);
                    Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (int i = 0; i < len; i += Vector256<float>.Count)
                    {
                        var va = Vector256.Create(xa[i..]);
                        var vb = Vector256.Create(xb[i..]);
                        var w0 = Vector256.Create(e0[i..]);
                        var w1 = Vector256.Create(e1[i..]);
                        var w2 = Vector256.Create(e2[i..]);
                        var w3 = Vector256.Create(e3[i..]);
                        a0 = Vector256.FusedMultiplyAdd(w0, va, a0);
                        a1 = Vector256.FusedMultiplyAdd(w1, va, a1);
                        a2 = Vector256.FusedMultiplyAdd(w2, va, a2);
                        a3 = Vector256.FusedMultiplyAdd(w3, va, a3);
                        b0 = Vector256.FusedMultiplyAdd(w0, vb, b0);
                        b1 = Vector256.FusedMultiplyAdd(w1, vb, b1);
                        b2 = Vector256.FusedMultiplyAdd(w2, vb, b2);
                        b3 = Vector256.FusedMultiplyAdd(w3, vb, b3);
                    }
                    y[s] += Vector256.Sum(a0); y[n + s] += Vector256.Sum(a1); y[2 * n + s] += Vector256.Sum(a2); y[3 * n + s] += Vector256.Sum(a3);
                    y[s + 1] += Vector256.Sum(b0); y[n + s + 1] += Vector256.Sum(b1); y[2 * n + s + 1] += Vector256.Sum(b2); y[3 * n + s + 1] += Vector256.Sum(b3);
                }
                for (; s < n; s++)
                {
                    var xs = x.Slice(s * cols + k0, len);
                    y[s] += Dot(e0, xs); y[n + s] += Dot(e1, xs); y[2 * n + s] += Dot(e2, xs); y[3 * n + s] += Dot(e3, xs);
                }
            }
            foreach (float v in y) total += (double)v * v;
        }
        if (r0 < rows) total += OutputErrorScalar(error[(r0 * cols)..], rows - r0, x, n, cols);
        return total;
    }

    /// <summary>The plain form of <see cref="OutputError"/>: one dot product per row and sample.</summary>
    public static double OutputErrorScalar(ReadOnlySpan<float> error, int rows, ReadOnlySpan<float> x, int n, int cols)
    {
        double total = 0;
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < n; s++)
            {
                double y = Dot(error.Slice(r * cols, cols), x.Slice(s * cols, cols));
                total += y * y;
            }
        return total;
    }

    /// <summary>Column width of the tiles of <see cref="ToColumnTiles"/>: four 8-float vectors.</summary>
    public const int TileWidth = 32;

    /// <summary>Rows of one piece of a column tile: 1024 x 32 floats (128 KiB) stay in L2 while they are used.</summary>
    public const int TileRows = 1024;

    /// <summary>
    /// A d x d matrix (d a multiple of <see cref="TileWidth"/>) in float, cut into bands of <see cref="TileRows"/>
    /// rows and each band into column tiles of <see cref="TileWidth"/>, stored band by band and tile by tile with a
    /// tile's rows adjacent: a pass over every tile of every band streams through the array once.
    /// </summary>
    public static float[] ToColumnTiles(double[] m, int d, int threads = 1)
    {
        if (d % TileWidth != 0) throw new ArgumentException($"column tiles need a multiple of {TileWidth} columns, got {d}");
        var tiles = new float[(long)d * d];
        For(d / TileWidth, threads, t =>
        {
            for (int i = 0; i < d; i++)
                for (int j = 0; j < TileWidth; j++) tiles[TileOffset(d, i, t) + j] = (float)m[(long)i * d + t * TileWidth + j];
        });
        return tiles;
    }

    /// <summary>Where row <paramref name="i"/> of column tile <paramref name="t"/> starts in the <see cref="ToColumnTiles"/> layout.</summary>
    public static long TileOffset(int d, int i, int t)
    {
        int band = i / TileRows, bandStart = band * TileRows, bandRows = Math.Min(TileRows, d - bandStart);
        return (long)bandStart * d + ((long)t * bandRows + (i - bandStart)) * TileWidth;
    }

    /// <summary>
    /// y[0..TileWidth) += Σ_k amounts[k] · tile row (columns[k] - firstRow) (rows of <paramref name="tile"/>, TileWidth values each).
    /// The sum is formed in registers with fused multiply-adds in two chains (even and odd k), then added to y once.
    /// </summary>
    public static void AccumulateTileRows(Span<float> y, ReadOnlySpan<float> tile, ReadOnlySpan<int> columns, ReadOnlySpan<float> amounts, int firstRow = 0)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            AccumulateTileRowsScalar(y, tile, columns, amounts, firstRow);
            return;
        }
        ref float t0 = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(tile);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int k = 0, n = columns.Length;
        int tileRows = tile.Length / TileWidth;
        for (; k + 1 < n; k += 2)
        {
            int ca = columns[k] - firstRow, cb = columns[k + 1] - firstRow;
            if ((uint)ca >= (uint)tileRows || (uint)cb >= (uint)tileRows) throw new ArgumentOutOfRangeException(nameof(columns));
            ref float ra = ref Unsafe.Add(ref t0, ca * TileWidth);
            ref float rb = ref Unsafe.Add(ref t0, cb * TileWidth);
            var sa = Vector256.Create(amounts[k]);
            var sb = Vector256.Create(amounts[k + 1]);
            a0 = Vector256.FusedMultiplyAdd(sa, Vector256.LoadUnsafe(ref ra), a0);
            a1 = Vector256.FusedMultiplyAdd(sa, Vector256.LoadUnsafe(ref ra, 8), a1);
            a2 = Vector256.FusedMultiplyAdd(sa, Vector256.LoadUnsafe(ref ra, 16), a2);
            a3 = Vector256.FusedMultiplyAdd(sa, Vector256.LoadUnsafe(ref ra, 24), a3);
            b0 = Vector256.FusedMultiplyAdd(sb, Vector256.LoadUnsafe(ref rb), b0);
            b1 = Vector256.FusedMultiplyAdd(sb, Vector256.LoadUnsafe(ref rb, 8), b1);
            b2 = Vector256.FusedMultiplyAdd(sb, Vector256.LoadUnsafe(ref rb, 16), b2);
            b3 = Vector256.FusedMultiplyAdd(sb, Vector256.LoadUnsafe(ref rb, 24), b3);
        }
        if (k < n)
        {
            var row = tile.Slice((columns[k] - firstRow) * TileWidth, TileWidth);
            var sa = Vector256.Create(amounts[k]);
            a0 = Vector256.FusedMultiplyAdd(sa, Vector256.Create(row), a0);
            a1 = Vector256.FusedMultiplyAdd(sa, Vector256.Create(row[8..]), a1);
            a2 = Vector256.FusedMultiplyAdd(sa, Vector256.Create(row[16..]), a2);
            a3 = Vector256.FusedMultiplyAdd(sa, Vector256.Create(row[24..]), a3);
        }
        (Vector256.Create((ReadOnlySpan<float>)y) + (a0 + b0)).CopyTo(y);
        (Vector256.Create((ReadOnlySpan<float>)y[8..]) + (a1 + b1)).CopyTo(y[8..]);
        (Vector256.Create((ReadOnlySpan<float>)y[16..]) + (a2 + b2)).CopyTo(y[16..]);
        (Vector256.Create((ReadOnlySpan<float>)y[24..]) + (a3 + b3)).CopyTo(y[24..]);
    }

    /// <summary>The scalar reference of <see cref="AccumulateTileRows"/> (same chains, same rounding).</summary>
    public static void AccumulateTileRowsScalar(Span<float> y, ReadOnlySpan<float> tile, ReadOnlySpan<int> columns, ReadOnlySpan<float> amounts, int firstRow = 0)
    {
        for (int j = 0; j < TileWidth; j++)
        {
            float even = 0, odd = 0;
            for (int k = 0; k < columns.Length; k++)
            {
                float t = tile[(columns[k] - firstRow) * TileWidth + j];
                if ((k & 1) == 0) even = MathF.FusedMultiplyAdd(amounts[k], t, even);
                else odd = MathF.FusedMultiplyAdd(amounts[k], t, odd);
            }
            y[j] += even + odd;
        }
    }
}
