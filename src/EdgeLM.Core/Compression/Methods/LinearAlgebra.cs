using System.Numerics;

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

    /// <summary>Σ_samples ‖x·Eᵀ‖²: the squared output error of a layer whose weights are off by E (rows x cols) on inputs X (n x cols).</summary>
    public static double OutputError(ReadOnlySpan<float> error, int rows, ReadOnlySpan<float> x, int n, int cols)
    {
        // Groups of error rows meet each sample while it is in cache, so the samples are read rows/8 times, not n times the error.
        double total = 0;
        for (int r0 = 0; r0 < rows; r0 += RowGroup)
        {
            int r1 = Math.Min(rows, r0 + RowGroup);
            for (int s = 0; s < n; s++)
            {
                var xs = x.Slice(s * cols, cols);
                for (int r = r0; r < r1; r++)
                {
                    double y = Dot(error.Slice(r * cols, cols), xs);
                    total += y * y;
                }
            }
        }
        return total;
    }
}
