using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>The gated FFN activation: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x).</summary>
public static unsafe class SwiGlu
{
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    public static void Apply(Span<float> gate, ReadOnlySpan<float> up)
    {
        if (up.Length != gate.Length) throw new ArgumentException($"swiglu: gate of {gate.Length}, up of {up.Length}");
        fixed (float* g = gate, u = up) Apply(g, u, gate.Length);
    }

    internal static void Apply(float* gate, float* up, int n)
    {
        if (Vector256.IsHardwareAccelerated) Apply256(gate, up, n);
        else ApplyScalar(gate, up, n);
    }

    internal static void ApplyScalar(float* gate, float* up, int n)
    {
        for (int i = 0; i < n; i++) gate[i] = Silu(gate[i]) * up[i];
    }

    internal static void Apply256(float* gate, float* up, int n)
    {
        var one = Vector256.Create(1f);
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var g = Vector256.Load(gate + i);
            (g / (one + Vector256.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
        }
        for (; i < n; i++) gate[i] = Silu(gate[i]) * up[i];
    }
}
