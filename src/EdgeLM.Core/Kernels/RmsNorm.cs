using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>y = x / sqrt(mean(x^2) + eps) * weight, in float32 like llama.cpp.</summary>
public static unsafe class RmsNorm
{
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        Check(x, weight, y);
        fixed (float* px = x, pw = weight, py = y) Apply(px, pw, py, x.Length, eps);
    }

    internal static void Apply(float* x, float* weight, float* y, int n, float eps)
    {
        float scale = 1f / MathF.Sqrt(Dot.Compute(x, x, n) / n + eps);
        if (Vector256.IsHardwareAccelerated) Scale256(x, weight, y, n, scale);
        else ScaleScalar(x, weight, y, n, scale);
    }

    public static void ApplyScalar(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        Check(x, weight, y);
        float sumSquares = 0;
        for (int i = 0; i < x.Length; i++) sumSquares += x[i] * x[i];
        float scale = 1f / MathF.Sqrt(sumSquares / x.Length + eps);
        for (int i = 0; i < x.Length; i++) y[i] = x[i] * scale * weight[i];
    }

    /// <summary>The vector path with an explicit width (tests compare it with <see cref="ApplyScalar"/>).</summary>
    internal static void ApplyVector256(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        Check(x, weight, y);
        fixed (float* px = x, pw = weight, py = y)
        {
            float scale = 1f / MathF.Sqrt(Dot.Dot256(px, px, x.Length) / x.Length + eps);
            Scale256(px, pw, py, x.Length, scale);
        }
    }

    private static void ScaleScalar(float* x, float* w, float* y, int n, float scale)
    {
        for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    }

    private static void Scale256(float* x, float* w, float* y, int n, float scale)
    {
        var s = Vector256.Create(scale);
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * s * Vector256.Load(w + i)).Store(y + i);
        for (; i < n; i++) y[i] = x[i] * scale * w[i];
    }

    private static void Check(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y)
    {
        if (x.Length == 0 || weight.Length != x.Length || y.Length != x.Length)
            throw new ArgumentException($"rms norm of {x.Length} values with {weight.Length} weights into {y.Length}");
    }
}
