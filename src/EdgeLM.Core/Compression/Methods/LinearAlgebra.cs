using System.Numerics;

namespace EdgeLM.Compression.Methods;

/// <summary>The few dense operations the calibration methods need, on row-major arrays.</summary>
internal static class LinearAlgebra
{
    /// <summary>In-place lower Cholesky factor of the symmetric positive definite d x d matrix a (upper triangle left as is).</summary>
    public static void CholeskyLower(double[] a, int d, string what)
    {
        for (int j = 0; j < d; j++)
        {
            var rowJ = a.AsSpan(j * d, j);
            double s = a[(long)j * d + j] - Dot(rowJ, rowJ);
            if (!(s > 0)) throw new InvalidDataException($"{what}: the calibration Hessian is not positive definite (too few or degenerate calibration samples)");
            double l = Math.Sqrt(s);
            a[(long)j * d + j] = l;
            for (int i = j + 1; i < d; i++)
                a[(long)i * d + j] = (a[(long)i * d + j] - Dot(a.AsSpan(i * d, j), rowJ)) / l;
        }
    }

    /// <summary>
    /// The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) that GPTQ walks column by column, from the lower factor L of H:
    /// H⁻¹ = L⁻ᵀL⁻¹, then factored again.
    /// </summary>
    public static double[] UpperCholeskyOfInverse(double[] h, int d, string what)
    {
        var l = (double[])h.Clone();
        CholeskyLower(l, d, what);
        // Linv (lower), row-major.
        var inv = new double[(long)d * d];
        for (int i = 0; i < d; i++)
        {
            inv[(long)i * d + i] = 1 / l[(long)i * d + i];
            for (int j = 0; j < i; j++)
            {
                double s = 0;
                for (int k = j; k < i; k++) s += l[(long)i * d + k] * inv[(long)k * d + j];
                inv[(long)i * d + j] = -s / l[(long)i * d + i];
            }
        }
        // Hinv = Linvᵀ Linv: Hinv[i,j] = sum_k Linv[k,i] Linv[k,j] for k >= max(i,j). Column access: transpose first.
        var t = new double[(long)d * d];
        for (int i = 0; i < d; i++)
            for (int k = 0; k <= i; k++) t[(long)k * d + i] = inv[(long)i * d + k];
        var hinv = new double[(long)d * d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j <= i; j++)
            {
                int from = i; // k >= max(i, j) = i
                double s = Dot(t.AsSpan(i * d + from, d - from), t.AsSpan(j * d + from, d - from));
                hinv[(long)i * d + j] = s;
                hinv[(long)j * d + i] = s;
            }
        CholeskyLower(hinv, d, what);
        var upper = new double[(long)d * d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j <= i; j++) upper[(long)j * d + i] = hinv[(long)i * d + j];
        return upper;
    }

    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && a.Length >= Vector<double>.Count)
        {
            var acc = Vector<double>.Zero;
            for (; i <= a.Length - Vector<double>.Count; i += Vector<double>.Count)
                acc += new Vector<double>(a[i..]) * new Vector<double>(b[i..]);
            s = Vector.Sum(acc);
        }
        for (; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float s = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && a.Length >= Vector<float>.Count)
        {
            var acc = Vector<float>.Zero;
            for (; i <= a.Length - Vector<float>.Count; i += Vector<float>.Count)
                acc += new Vector<float>(a[i..]) * new Vector<float>(b[i..]);
            s = Vector.Sum(acc);
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
        double total = 0;
        for (int s = 0; s < n; s++)
        {
            var xs = x.Slice(s * cols, cols);
            for (int r = 0; r < rows; r++)
            {
                double y = Dot(error.Slice(r * cols, cols), xs);
                total += y * y;
            }
        }
        return total;
    }
}
