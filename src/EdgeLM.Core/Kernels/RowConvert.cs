using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels;

/// <summary>
/// Rows of weights to float32 for the kernels: vectorized F16 and BF16 conversion (the scalar
/// <see cref="Dequantize"/> is the reference), every other type through <see cref="Dequantize.Row"/>.
/// </summary>
public static unsafe class RowConvert
{
    /// <summary>Row <paramref name="row"/> of <paramref name="w"/> into dst (dst.Length must equal the row length).</summary>
    public static void Row(Tensor w, long row, Span<float> dst)
    {
        if (dst.Length != w.RowLength) throw new ArgumentException($"tensor '{w.Name}': row of {w.RowLength} values, buffer of {dst.Length}");
        if ((ulong)row >= (ulong)w.RowCount) throw new ArgumentOutOfRangeException(nameof(row), $"row {row} of tensor '{w.Name}' with {w.RowCount} rows");
        fixed (float* d = dst) RowUnchecked(w.Type, w.Data + row * w.RowStride, w.RowStride, d, dst.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowUnchecked(GgmlType type, byte* src, long rowBytes, float* dst, int n)
    {
        switch (type)
        {
            case GgmlType.F32: Buffer.MemoryCopy(src, dst, (long)n * 4, (long)n * 4); break;
            case GgmlType.F16: HalfToSingle((ushort*)src, dst, n); break;
            case GgmlType.BF16: BFloat16ToSingle((ushort*)src, dst, n); break;
            default: Dequantize.Row(type, new ReadOnlySpan<byte>(src, checked((int)rowBytes)), new Span<float>(dst, n)); break;
        }
    }

    public static void HalfToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("destination shorter than source");
        fixed (ushort* s = src) fixed (float* d = dst) HalfToSingle(s, d, src.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void HalfToSingle(ushort* src, float* dst, int n)
    {
        if (Vector512.IsHardwareAccelerated) HalfToSingle512(src, dst, n);
        else if (Vector256.IsHardwareAccelerated) HalfToSingle256(src, dst, n);
        else if (Vector128.IsHardwareAccelerated) HalfToSingle128(src, dst, n);
        else HalfToSingleScalar(src, dst, n);
    }

    internal static void HalfToSingleScalar(ushort* src, float* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
    }

    // Exact for every half: shifting the magnitude bits into float position and scaling by 2^112 rebias the exponent
    // (and renormalize subnormals through the float multiply); inf/NaN get the float all-ones exponent.
    private const uint MagicScaleBits = (127 + 112) << 23; // 2^112
    private const uint HalfInfBits = 0x7C00;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Half4(Vector128<uint> h)
    {
        var magnitude = h & Vector128.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector128.Create(MagicScaleBits).AsSingle();
        var infNan = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(HalfInfBits)) & Vector128.Create(0x7F800000u);
        var sign = (h & Vector128.Create(0x8000u)) << 16;
        return (scaled.AsUInt32() | infNan | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Half8(Vector256<uint> h)
    {
        var magnitude = h & Vector256.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector256.Create(MagicScaleBits).AsSingle();
        var infNan = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(HalfInfBits)) & Vector256.Create(0x7F800000u);
        var sign = (h & Vector256.Create(0x8000u)) << 16;
        return (scaled.AsUInt32() | infNan | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Half16(Vector512<uint> h)
    {
        var magnitude = h & Vector512.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector512.Create(MagicScaleBits).AsSingle();
        var infNan = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(HalfInfBits)) & Vector512.Create(0x7F800000u);
        var sign = (h & Vector512.Create(0x8000u)) << 16;
        return (scaled.AsUInt32() | infNan | sign).AsSingle();
    }

    internal static void HalfToSingle128(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var (lo, hi) = Vector128.Widen(Vector128.Load(src + i));
            Half4(lo).Store(dst + i);
            Half4(hi).Store(dst + i + 4);
        }
        HalfToSingleScalar(src + i, dst + i, n - i);
    }

    internal static void HalfToSingle256(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
            Half8(lo).Store(dst + i);
            Half8(hi).Store(dst + i + 8);
        }
        HalfToSingleScalar(src + i, dst + i, n - i);
    }

    internal static void HalfToSingle512(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
            Half16(lo).Store(dst + i);
            Half16(hi).Store(dst + i + 16);
        }
        HalfToSingleScalar(src + i, dst + i, n - i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void BFloat16ToSingle(ushort* src, float* dst, int n)
    {
        if (Vector256.IsHardwareAccelerated) BFloat16ToSingle256(src, dst, n);
        else BFloat16ToSingleScalar(src, dst, n);
    }

    internal static void BFloat16ToSingleScalar(ushort* src, float* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    internal static void BFloat16ToSingle256(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
            (lo << 16).AsSingle().Store(dst + i);
            (hi << 16).AsSingle().Store(dst + i + 8);
        }
        BFloat16ToSingleScalar(src + i, dst + i, n - i);
    }

    /// <summary>Float32 to IEEE half, round to nearest even (the F16 KV cache).</summary>
    internal static void SingleToHalf(float* src, ushort* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = BitConverter.HalfToUInt16Bits((Half)src[i]);
    }
}
