using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>
/// Float32 dot products and axpy. Each operation has a scalar reference and Vector128/256/512 paths; the dispatcher
/// picks the widest accelerated width once per process, so a given machine always sums in the same order.
/// </summary>
public static unsafe class Dot
{
    public static float Compute(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"dot of lengths {a.Length} and {b.Length}");
        fixed (float* pa = a, pb = b) return Compute(pa, pb, a.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Compute(float* a, float* b, int n)
    {
        if (Vector512.IsHardwareAccelerated) return Dot512(a, b, n);
        if (Vector256.IsHardwareAccelerated) return Dot256(a, b, n);
        if (Vector128.IsHardwareAccelerated) return Dot128(a, b, n);
        return DotScalar(a, b, n);
    }

    internal static float DotScalar(float* a, float* b, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    internal static float Dot128(float* a, float* b, int n) => DotLanes<Lanes128>(a, b, n);
    internal static float Dot256(float* a, float* b, int n) => DotLanes<Lanes256>(a, b, n);
    internal static float Dot512(float* a, float* b, int n) => DotLanes<Lanes512>(a, b, n);

    // Two accumulators hide the FMA latency; more does not help a memory-bound dot.
    internal static float DotLanes<TL>(float* a, float* b, int n) where TL : struct, IFloatLanes<TL>
    {
        var acc0 = TL.Zero;
        var acc1 = TL.Zero;
        int i = 0;
        for (; i + 2 * TL.Count <= n; i += 2 * TL.Count)
        {
            acc0 = TL.MultiplyAdd(TL.Load(a + i), TL.Load(b + i), acc0);
            acc1 = TL.MultiplyAdd(TL.Load(a + i + TL.Count), TL.Load(b + i + TL.Count), acc1);
        }
        for (; i + TL.Count <= n; i += TL.Count) acc0 = TL.MultiplyAdd(TL.Load(a + i), TL.Load(b + i), acc0);
        float sum = TL.Sum(TL.Add(acc0, acc1));
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>y += a * x (attention's weighted sum of values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Axpy(float a, float* x, float* y, int n)
    {
        if (Vector512.IsHardwareAccelerated) Axpy512(a, x, y, n);
        else if (Vector256.IsHardwareAccelerated) Axpy256(a, x, y, n);
        else if (Vector128.IsHardwareAccelerated) Axpy128(a, x, y, n);
        else AxpyScalar(a, x, y, n);
    }

    internal static void AxpyScalar(float a, float* x, float* y, int n)
    {
        for (int i = 0; i < n; i++) y[i] += a * x[i];
    }

    internal static void Axpy128(float a, float* x, float* y, int n)
    {
        var av = Vector128.Create(a);
        int i = 0;
        for (; i + 4 <= n; i += 4) Vector128.MultiplyAddEstimate(av, Vector128.Load(x + i), Vector128.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += a * x[i];
    }

    internal static void Axpy256(float a, float* x, float* y, int n)
    {
        var av = Vector256.Create(a);
        int i = 0;
        for (; i + 8 <= n; i += 8) Vector256.MultiplyAddEstimate(av, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += a * x[i];
    }

    internal static void Axpy512(float a, float* x, float* y, int n)
    {
        var av = Vector512.Create(a);
        int i = 0;
        for (; i + 16 <= n; i += 16) Vector512.MultiplyAddEstimate(av, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += a * x[i];
    }
}
