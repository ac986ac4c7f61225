using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>Element-wise vector arithmetic (residual adds, biases).</summary>
public static unsafe class Elementwise
{
    /// <summary>y += x.</summary>
    public static void Add(Span<float> y, ReadOnlySpan<float> x)
    {
        if (x.Length != y.Length) throw new ArgumentException($"add of lengths {y.Length} and {x.Length}");
        fixed (float* py = y, px = x) Add(py, px, y.Length);
    }

    internal static void Add(float* y, float* x, int n)
    {
        if (Vector256.IsHardwareAccelerated) Add256(y, x, n);
        else AddScalar(y, x, n);
    }

    internal static void AddScalar(float* y, float* x, int n)
    {
        for (int i = 0; i < n; i++) y[i] += x[i];
    }

    internal static void Add256(float* y, float* x, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) + Vector256.Load(x + i)).Store(y + i);
        for (; i < n; i++) y[i] += x[i];
    }
}
