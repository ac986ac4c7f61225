using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Float activation rows to ggml's block_q8_0 / block_q8_1 / block_q8_K, bit-identical to <see cref="Quantize.Row"/>
/// (the scalar reference) for every finite input: the SIMD paths do the same float operations per element, and
/// only the order-independent maximum is reduced in vector lanes. Run once per matmul input; the integer kernels
/// then reuse the blocks for every output row.
/// </summary>
public static unsafe class ActivationQuantizer
{
    public static int BlockSize(ActivationFormat format) => format == ActivationFormat.Q8_K ? GgmlTypeInfo.QK_K : 32;

    public static int BlockBytes(ActivationFormat format) => GgmlTypeInfo.BlockBytes(TypeOf(format));

    public static GgmlType TypeOf(ActivationFormat format) => format switch
    {
        ActivationFormat.Q8_0 => GgmlType.Q8_0,
        ActivationFormat.Q8_1 => GgmlType.Q8_1,
        ActivationFormat.Q8_K => GgmlType.Q8_K,
        _ => throw new ArgumentOutOfRangeException(nameof(format), $"unknown activation format {format}"),
    };

    /// <summary>Bytes of one quantized row of <paramref name="k"/> values (k a multiple of the block size).</summary>
    public static long RowBytes(ActivationFormat format, int k) => (long)(k / BlockSize(format)) * BlockBytes(format);

    /// <summary>Quantizes <paramref name="src"/> (a whole number of blocks) into the first RowBytes bytes of dst.</summary>
    public static void Row(ActivationFormat format, ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blockSize = BlockSize(format);
        if (src.Length % blockSize != 0)
            throw new ArgumentException($"{format}: {src.Length} values is not a multiple of the block size {blockSize}", nameof(src));
        long need = RowBytes(format, src.Length);
        if (dst.Length < need) throw new ArgumentException($"{format}: destination has {dst.Length} bytes, {need} needed", nameof(dst));
        fixed (float* s = src) fixed (byte* d = dst) RowUnchecked(format, s, d, src.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowUnchecked(ActivationFormat format, float* src, byte* dst, int k)
    {
        if (Vector256.IsHardwareAccelerated) Row256(format, src, dst, k);
        else if (Vector128.IsHardwareAccelerated) Row128(format, src, dst, k);
        else RowScalar(format, src, dst, k);
    }

    internal static void RowScalar(ActivationFormat format, float* src, byte* dst, int k) =>
        Quantize.Row(TypeOf(format), new ReadOnlySpan<float>(src, k), new Span<byte>(dst, checked((int)RowBytes(format, k))));

    internal static void Row256(ActivationFormat format, float* src, byte* dst, int k)
    {
        int blocks = k / BlockSize(format);
        int bytes = BlockBytes(format);
        for (int b = 0; b < blocks; b++)
        {
            switch (format)
            {
                case ActivationFormat.Q8_0: Block32x256(src + b * 32, dst + b * bytes, withSum: false); break;
                case ActivationFormat.Q8_1: Block32x256(src + b * 32, dst + b * bytes, withSum: true); break;
                default: BlockKx256(src + b * GgmlTypeInfo.QK_K, dst + b * bytes); break;
            }
        }
    }

    internal static void Row128(ActivationFormat format, float* src, byte* dst, int k)
    {
        int blocks = k / BlockSize(format);
        int bytes = BlockBytes(format);
        for (int b = 0; b < blocks; b++)
        {
            switch (format)
            {
                case ActivationFormat.Q8_0: Block32x128(src + b * 32, dst + b * bytes, withSum: false); break;
                case ActivationFormat.Q8_1: Block32x128(src + b * 32, dst + b * bytes, withSum: true); break;
                default: BlockKx128(src + b * GgmlTypeInfo.QK_K, dst + b * bytes); break;
            }
        }
    }

    /// <summary>
    /// float to IEEE binary16 bits, round to nearest even: bit-identical to <see cref="HalfPrecision.ToF16"/> (tested on
    /// every class of input) but branch-light and inlined. The BCL's (Half) cast runs as precompiled baseline code when
    /// tiered compilation is off (the CLI's setting) and cost ~130 ns per block, more than the block's quantization.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort ToF16(float value)
    {
        const uint F32Infinity = 255u << 23;
        const uint F16Overflow = (127u + 16) << 23;          // 65536: from here on the result is infinity (or NaN)
        const uint SmallestNormal = 113u << 23;             // 2^-14
        const uint SubnormalMagic = ((127u - 15) + (23 - 10) + 1) << 23; // 0.5: adding it aligns the f16 subnormal bits
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint sign = bits & 0x8000_0000u;
        bits ^= sign;
        uint result;
        if (bits >= F16Overflow) result = bits > F32Infinity ? 0x7E00u : 0x7C00u;
        else if (bits < SmallestNormal)
            result = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(bits) + BitConverter.UInt32BitsToSingle(SubnormalMagic)) - SubnormalMagic;
        else
        {
            uint mantissaOdd = (bits >> 13) & 1;
            bits += unchecked((uint)((15 - 127) << 23)) + 0xFFF + mantissaOdd;
            result = bits >> 13;
        }
        return (ushort)(result | (sign >> 16));
    }

    // C roundf (half away from zero) without a rounding-mode instruction: the fraction f = x - trunc(x) is exact, so
    // is 2f, and trunc(2f) is the step roundf takes away from zero: +-1 exactly when |f| >= 0.5, with x's sign.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundAwayFromZero(Vector256<float> v)
    {
        var t = Vector256.Truncate(v);
        var fraction = v - t;
        return ToInt32Exact(t + Vector256.Truncate(fraction + fraction));
    }

    /// <summary>
    /// The largest |x| of four vectors, or NaN when any lane is NaN (callers then take the scalar reference, which
    /// handles NaN its own way). Vector256.Max honours NaN and signed zeros lane by lane, which the JIT expands to
    /// eight instructions per call without AVX-512; on magnitudes of non-NaN values the native max is the same.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxMagnitude(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3)
    {
        var ordered = Vector256.Equals(v0, v0) & Vector256.Equals(v1, v1) & Vector256.Equals(v2, v2) & Vector256.Equals(v3, v3);
        if (ordered.ExtractMostSignificantBits() != 0xFF) return float.NaN;
        var m = Vector256.MaxNative(Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3)));
        var h = Vector128.MaxNative(m.GetLower(), m.GetUpper());
        h = Vector128.MaxNative(h, Vector128.Shuffle(h, Vector128.Create(2, 3, 0, 1)));
        h = Vector128.MaxNative(h, Vector128.Shuffle(h, Vector128.Create(1, 0, 3, 2)));
        return h.ToScalar();
    }

    /// <summary>
    /// Integral floats in int range to int: the bare AVX conversion. Vector256.ConvertToInt32 saturates NaN and
    /// out-of-range lanes, which costs a fix-up sequence per vector without AVX-512; every caller here passes
    /// integers of magnitude at most 128, where both give the same ints.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ToInt32Exact(Vector256<float> integral) =>
        Avx.IsSupported ? Avx.ConvertToVector256Int32WithTruncation(integral) : Vector256.ConvertToInt32(integral);

    /// <summary>
    /// The low bytes of 32 ints in [-128, 127], in order. With AVX2: two saturating packs (a no-op on this range)
    /// and one lane fix-up permute, instead of the generic truncating narrow's masks and shuffles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> NarrowToBytes(Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3)
    {
        if (Avx2.IsSupported)
        {
            // Per 128-bit lane the packs interleave: lane 0 holds dwords 0-3 of q0..q3, lane 1 dwords 4-7.
            var bytes = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(q0, q1), Avx2.PackSignedSaturate(q2, q3));
            return Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
        }
        return Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> RoundAwayFromZero(Vector128<float> v)
    {
        var t = Vector128.Truncate(v);
        var up = Vector128.GreaterThanOrEqual(Vector128.Abs(v - t), Vector128.Create(0.5f));
        var step = Vector128.CopySign(Vector128<float>.One, v) & up;
        return Vector128.ConvertToInt32(t + step);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAcross(Vector128<float> v)
    {
        v = Vector128.Max(v, Vector128.Shuffle(v, Vector128.Create(2, 3, 0, 1)));
        v = Vector128.Max(v, Vector128.Shuffle(v, Vector128.Create(1, 0, 3, 2)));
        return v.ToScalar();
    }

    // block_q8_0 { half d; i8 qs[32] } / block_q8_1 { half d; half s; i8 qs[32] }.
    private static void Block32x256(float* x, byte* y, bool withSum)
    {
        var v0 = Vector256.Load(x); var v1 = Vector256.Load(x + 8);
        var v2 = Vector256.Load(x + 16); var v3 = Vector256.Load(x + 24);
        float amax = MaxMagnitude(v0, v1, v2, v3);
        if (float.IsNaN(amax))
        {
            var type = withSum ? GgmlType.Q8_1 : GgmlType.Q8_0;
            Quantize.Row(type, new ReadOnlySpan<float>(x, 32), new Span<byte>(y, GgmlTypeInfo.BlockBytes(type)));
            return;
        }
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        var idv = Vector256.Create(id);
        var q0 = RoundAwayFromZero(v0 * idv); var q1 = RoundAwayFromZero(v1 * idv);
        var q2 = RoundAwayFromZero(v2 * idv); var q3 = RoundAwayFromZero(v3 * idv);
        var bytes = NarrowToBytes(q0, q1, q2, q3);
        *(ushort*)y = ToF16(d);
        if (withSum)
        {
            int sum = Vector256.Sum(q0 + q1 + q2 + q3);
            *(ushort*)(y + 2) = ToF16(sum * d);
            bytes.Store((sbyte*)(y + 4));
        }
        else bytes.Store((sbyte*)(y + 2));
    }

    private static void Block32x128(float* x, byte* y, bool withSum)
    {
        var m = Vector128<float>.Zero;
        for (int i = 0; i < 32; i += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Load(x + i)));
        float amax = MaxAcross(m);
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        var idv = Vector128.Create(id);
        *(ushort*)y = ToF16(d);
        sbyte* qs = (sbyte*)(y + (withSum ? 4 : 2));
        var sum = Vector128<int>.Zero;
        for (int i = 0; i < 32; i += 16)
        {
            var q0 = RoundAwayFromZero(Vector128.Load(x + i) * idv);
            var q1 = RoundAwayFromZero(Vector128.Load(x + i + 4) * idv);
            var q2 = RoundAwayFromZero(Vector128.Load(x + i + 8) * idv);
            var q3 = RoundAwayFromZero(Vector128.Load(x + i + 12) * idv);
            sum += q0 + q1 + q2 + q3;
            Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store(qs + i);
        }
        if (withSum) *(ushort*)(y + 2) = ToF16(Vector128.Sum(sum) * d);
    }

    // block_q8_K { float d; i8 qs[256]; i16 bsums[16] }. The scale comes from the FIRST element of largest
    // magnitude (its sign matters), found by comparing against the vector maximum.
    private static void BlockKx256(float* x, byte* y)
    {
        const int QK = GgmlTypeInfo.QK_K;
        float amax = 0;
        for (int i = 0; i < QK; i += 32)
            amax = MathF.Max(amax, MaxMagnitude(Vector256.Load(x + i), Vector256.Load(x + i + 8), Vector256.Load(x + i + 16), Vector256.Load(x + i + 24)));
        if (float.IsNaN(amax))
        {
            BlockKScalar(x, y);
            return;
        }
        if (amax == 0)
        {
            new Span<byte>(y, 4 + QK + QK / 8).Clear();
            return;
        }
        if (!TryFirstWithMagnitude(x, amax, out float max))
        {
            BlockKScalar(x, y);
            return;
        }
        float iscale = -127f / max;
        var isv = Vector256.Create(iscale);
        var limit = Vector256.Create(127);
        sbyte* qs = (sbyte*)(y + 4);
        short* bsums = (short*)(y + 4 + QK);
        for (int i = 0; i < QK; i += 32)
        {
            // |x * iscale| <= 127 (rounded at most to 127.00001), so the conversion is exact.
            var q0 = Vector256.Min(limit, ToInt32Exact(Vector256.Round(Vector256.Load(x + i) * isv)));
            var q1 = Vector256.Min(limit, ToInt32Exact(Vector256.Round(Vector256.Load(x + i + 8) * isv)));
            var q2 = Vector256.Min(limit, ToInt32Exact(Vector256.Round(Vector256.Load(x + i + 16) * isv)));
            var q3 = Vector256.Min(limit, ToInt32Exact(Vector256.Round(Vector256.Load(x + i + 24) * isv)));
            NarrowToBytes(q0, q1, q2, q3).Store(qs + i);
            bsums[i / 16] = (short)Vector256.Sum(q0 + q1);
            bsums[i / 16 + 1] = (short)Vector256.Sum(q2 + q3);
        }
        *(float*)y = 1 / iscale;
    }

    private static void BlockKx128(float* x, byte* y)
    {
        const int QK = GgmlTypeInfo.QK_K;
        var m = Vector128<float>.Zero;
        for (int i = 0; i < QK; i += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Load(x + i)));
        float amax = MaxAcross(m);
        if (amax == 0)
        {
            new Span<byte>(y, 4 + QK + QK / 8).Clear();
            return;
        }
        if (!TryFirstWithMagnitude(x, amax, out float max))
        {
            BlockKScalar(x, y);
            return;
        }
        float iscale = -127f / max;
        var isv = Vector128.Create(iscale);
        var limit = Vector128.Create(127);
        sbyte* qs = (sbyte*)(y + 4);
        short* bsums = (short*)(y + 4 + QK);
        for (int i = 0; i < QK; i += 16)
        {
            var q0 = Vector128.Min(limit, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i) * isv)));
            var q1 = Vector128.Min(limit, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 4) * isv)));
            var q2 = Vector128.Min(limit, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 8) * isv)));
            var q3 = Vector128.Min(limit, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 12) * isv)));
            Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store(qs + i);
            bsums[i / 16] = (short)Vector128.Sum(q0 + q1 + q2 + q3);
        }
        *(float*)y = 1 / iscale;
    }

    // NaN in the block: no element equals the maximum; the reference then decides (it skips NaNs).
    private static bool TryFirstWithMagnitude(float* x, float amax, out float max)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            // Eight at a time (decode quantizes every matmul input on one thread, before the pool starts).
            var target = Vector256.Create(amax);
            for (int j = 0; j < GgmlTypeInfo.QK_K; j += 8)
            {
                uint hits = Vector256.Equals(Vector256.Abs(Vector256.Load(x + j)), target).ExtractMostSignificantBits();
                if (hits != 0) { max = x[j + System.Numerics.BitOperations.TrailingZeroCount(hits)]; return true; }
            }
            max = 0;
            return false;
        }
        for (int j = 0; j < GgmlTypeInfo.QK_K; j++)
            if (MathF.Abs(x[j]) == amax) { max = x[j]; return true; }
        max = 0;
        return false;
    }

    private static void BlockKScalar(float* x, byte* y) =>
        Quantize.Row(GgmlType.Q8_K, new ReadOnlySpan<float>(x, GgmlTypeInfo.QK_K), new Span<byte>(y, GgmlTypeInfo.BlockBytes(GgmlType.Q8_K)));
}
