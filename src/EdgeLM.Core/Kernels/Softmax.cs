using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>In-place numerically stable softmax.</summary>
public static unsafe class Softmax
{
    public static void Apply(Span<float> x)
    {
        if (x.Length == 0) return;
        fixed (float* p = x) Apply(p, x.Length);
    }

    internal static void Apply(float* x, int n)
    {
        if (Vector256.IsHardwareAccelerated) Apply256(x, n);
        else ApplyScalar(x, n);
    }

    public static void ApplyScalar(Span<float> x)
    {
        if (x.Length == 0) return;
        fixed (float* p = x) ApplyScalar(p, x.Length);
    }

    internal static void ApplyScalar(float* x, int n)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, x[i]);
        float sum = 0;
        for (int i = 0; i < n; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        float inverse = 1f / sum;
        for (int i = 0; i < n; i++) x[i] *= inverse;
    }

    internal static void Apply256(float* x, int n)
    {
        int i = 0;
        var maxV = Vector256.Create(float.NegativeInfinity);
        for (; i + 8 <= n; i += 8) maxV = Vector256.Max(maxV, Vector256.Load(x + i));
        float max = float.NegativeInfinity;
        for (int k = 0; k < 8; k++) max = MathF.Max(max, maxV[k]);
        for (; i < n; i++) max = MathF.Max(max, x[i]);

        var m = Vector256.Create(max);
        var sumV = Vector256<float>.Zero;
        i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var e = Vector256.Exp(Vector256.Load(x + i) - m);
            e.Store(x + i);
            sumV += e;
        }
        float sum = Vector256.Sum(sumV);
        for (; i < n; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }

        var inverse = Vector256.Create(1f / sum);
        i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * inverse).Store(x + i);
        for (; i < n; i++) x[i] *= 1f / sum;
    }
}
