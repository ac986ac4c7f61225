using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    // Two accumulators hide the FMA latency; more does not help a memory-bound matvec.
    internal static float Dot128(float* a, float* b, int n)
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            acc0 = Vector128.MultiplyAddEstimate(Vector128.Load(a + i), Vector128.Load(b + i), acc0);
            acc1 = Vector128.MultiplyAddEstimate(Vector128.Load(a + i + 4), Vector128.Load(b + i + 4), acc1);
        }
        for (; i + 4 <= n; i += 4) acc0 = Vector128.MultiplyAddEstimate(Vector128.Load(a + i), Vector128.Load(b + i), acc0);
        float sum = Vector128.Sum(acc0 + acc1);
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    internal static float Dot256(float* a, float* b, int n)
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            acc1 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
        }
        for (; i + 8 <= n; i += 8) acc0 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    internal static float Dot512(float* a, float* b, int n)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
            acc1 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), acc1);
        }
        for (; i + 16 <= n; i += 16) acc0 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
        float sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>Four rows against one vector: x is loaded once per step for all four rows (the matmul inner kernel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Compute4(float* r0, float* r1, float* r2, float* r3, float* x, int n, float* result)
    {
        if (Vector512.IsHardwareAccelerated) Dot4x512(r0, r1, r2, r3, x, n, result);
        else if (Vector256.IsHardwareAccelerated) Dot4x256(r0, r1, r2, r3, x, n, result);
        else if (Vector128.IsHardwareAccelerated) Dot4x128(r0, r1, r2, r3, x, n, result);
        else Dot4Scalar(r0, r1, r2, r3, x, n, result);
    }

    internal static void Dot4Scalar(float* r0, float* r1, float* r2, float* r3, float* x, int n, float* result)
    {
        result[0] = DotScalar(r0, x, n);
        result[1] = DotScalar(r1, x, n);
        result[2] = DotScalar(r2, x, n);
        result[3] = DotScalar(r3, x, n);
    }

    internal static void Dot4x128(float* r0, float* r1, float* r2, float* r3, float* x, int n, float* result)
    {
        Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 4 <= n; i += 4)
        {
            var xv = Vector128.Load(x + i);
            a0 = Vector128.MultiplyAddEstimate(Vector128.Load(r0 + i), xv, a0);
            a1 = Vector128.MultiplyAddEstimate(Vector128.Load(r1 + i), xv, a1);
            a2 = Vector128.MultiplyAddEstimate(Vector128.Load(r2 + i), xv, a2);
            a3 = Vector128.MultiplyAddEstimate(Vector128.Load(r3 + i), xv, a3);
        }
        float s0 = Vector128.Sum(a0), s1 = Vector128.Sum(a1), s2 = Vector128.Sum(a2), s3 = Vector128.Sum(a3);
        for (; i < n; i++) { s0 += r0[i] * x[i]; s1 += r1[i] * x[i]; s2 += r2[i] * x[i]; s3 += r3[i] * x[i]; }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    internal static void Dot4x256(float* r0, float* r1, float* r2, float* r3, float* x, int n, float* result)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var xv = Vector256.Load(x + i);
            a0 = Vector256.MultiplyAddEstimate(Vector256.Load(r0 + i), xv, a0);
            a1 = Vector256.MultiplyAddEstimate(Vector256.Load(r1 + i), xv, a1);
            a2 = Vector256.MultiplyAddEstimate(Vector256.Load(r2 + i), xv, a2);
            a3 = Vector256.MultiplyAddEstimate(Vector256.Load(r3 + i), xv, a3);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < n; i++) { s0 += r0[i] * x[i]; s1 += r1[i] * x[i]; s2 += r2[i] * x[i]; s3 += r3[i] * x[i]; }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    internal static void Dot4x512(float* r0, float* r1, float* r2, float* r3, float* x, int n, float* result)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var xv = Vector512.Load(x + i);
            a0 = Vector512.MultiplyAddEstimate(Vector512.Load(r0 + i), xv, a0);
            a1 = Vector512.MultiplyAddEstimate(Vector512.Load(r1 + i), xv, a1);
            a2 = Vector512.MultiplyAddEstimate(Vector512.Load(r2 + i), xv, a2);
            a3 = Vector512.MultiplyAddEstimate(Vector512.Load(r3 + i), xv, a3);
        }
        float s0 = Vector512.Sum(a0), s1 = Vector512.Sum(a1), s2 = Vector512.Sum(a2), s3 = Vector512.Sum(a3);
        for (; i < n; i++) { s0 += r0[i] * x[i]; s1 += r1[i] * x[i]; s2 += r2[i] * x[i]; s3 += r3[i] * x[i]; }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    /// <summary>
    /// <see cref="Dot4x256"/> on F16 rows converted in registers (decode: a row is used once, so converting it to
    /// scratch first would only add a store and a load). Conversion is exact, so results equal the scratch path bitwise.
    /// </summary>
    /// <remarks>Requires AVX2 (zero-extending load of eight halves).</remarks>
    internal static void Dot4Half256(ushort* r0, ushort* r1, ushort* r2, ushort* r3, float* x, int n, float* result)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var xv = Vector256.Load(x + i);
            a0 = Vector256.MultiplyAddEstimate(RowConvert.Half8(Avx2.ConvertToVector256Int32(r0 + i).AsUInt32()), xv, a0);
            a1 = Vector256.MultiplyAddEstimate(RowConvert.Half8(Avx2.ConvertToVector256Int32(r1 + i).AsUInt32()), xv, a1);
            a2 = Vector256.MultiplyAddEstimate(RowConvert.Half8(Avx2.ConvertToVector256Int32(r2 + i).AsUInt32()), xv, a2);
            a3 = Vector256.MultiplyAddEstimate(RowConvert.Half8(Avx2.ConvertToVector256Int32(r3 + i).AsUInt32()), xv, a3);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < n; i++)
        {
            s0 += (float)BitConverter.UInt16BitsToHalf(r0[i]) * x[i];
            s1 += (float)BitConverter.UInt16BitsToHalf(r1[i]) * x[i];
            s2 += (float)BitConverter.UInt16BitsToHalf(r2[i]) * x[i];
            s3 += (float)BitConverter.UInt16BitsToHalf(r3[i]) * x[i];
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
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
