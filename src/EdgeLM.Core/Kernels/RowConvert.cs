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
        if (Vector512.IsHardwareAccelerated) HalfToSingle<Lanes512>(src, dst, n);
        else if (Vector256.IsHardwareAccelerated) HalfToSingle<Lanes256>(src, dst, n);
        else if (Vector128.IsHardwareAccelerated) HalfToSingle<Lanes128>(src, dst, n);
        else HalfToSingleScalar(src, dst, n);
    }

    internal static void HalfToSingleScalar(ushort* src, float* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
    }

    /// <summary>Bitwise equal to <see cref="HalfToSingleScalar"/> for every half, NaN payloads included.</summary>
    internal static void HalfToSingle<TL>(ushort* src, float* dst, int n) where TL : struct, IFloatLanes<TL>
    {
        int i = 0;
        for (; i + TL.Count <= n; i += TL.Count) TL.Store(TL.LoadHalf(src + i), dst + i);
        HalfToSingleScalar(src + i, dst + i, n - i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void BFloat16ToSingle(ushort* src, float* dst, int n)
    {
        if (Vector512.IsHardwareAccelerated) BFloat16ToSingle<Lanes512>(src, dst, n);
        else if (Vector256.IsHardwareAccelerated) BFloat16ToSingle<Lanes256>(src, dst, n);
        else if (Vector128.IsHardwareAccelerated) BFloat16ToSingle<Lanes128>(src, dst, n);
        else BFloat16ToSingleScalar(src, dst, n);
    }

    internal static void BFloat16ToSingleScalar(ushort* src, float* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    internal static void BFloat16ToSingle<TL>(ushort* src, float* dst, int n) where TL : struct, IFloatLanes<TL>
    {
        int i = 0;
        for (; i + TL.Count <= n; i += TL.Count) TL.Store(TL.LoadBFloat16(src + i), dst + i);
        BFloat16ToSingleScalar(src + i, dst + i, n - i);
    }

    /// <summary>Float32 to IEEE half, round to nearest even (the F16 KV cache).</summary>
    internal static void SingleToHalf(float* src, ushort* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = BitConverter.HalfToUInt16Bits((Half)src[i]);
    }
}
