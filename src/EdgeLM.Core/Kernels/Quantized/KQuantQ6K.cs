using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d } against block_q8_K. Per 128 values, 64 bytes of ql
/// (low nibbles of values l and l+32, high nibbles of l+64 and l+96) and 32 bytes of qh (two bits each);
/// value = d * sc_g * (q - 32) with one signed scale per 16 values. The SIMD paths multiply the unsigned q and
/// take the -32 back out once per block through the Q8_K bsums: sum(sc * (q - 32) * q8) = sum(sc * q * q8) - 32 * sum(sc * bsum).
/// </summary>
public unsafe struct Q6_KKernel : IWeightKernel
{
    private const int BlockBytes = 210;
    private const int HighBitsOffset = 128;
    private const int ScalesOffset = 192;
    private const int DeltaOffset = 208;

    public static GgmlType WeightType => GgmlType.Q6_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;

    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
    {
        int blocks = KQuant.Blocks(GgmlType.Q6_K, k);
        KQuant.CheckTile(GgmlType.Q6_K, rows, cols);
        if (Avx2.IsSupported && Fma.IsSupported) TileAvx2(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
        else TileVector128(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
    }

    /// <summary>ggml_vec_dot_q6_K_q8_K_generic, including its float summation order.</summary>
    public static float DotScalar(byte* w, byte* x, int k)
    {
        int blocks = KQuant.Blocks(GgmlType.Q6_K, k);
        sbyte* levels = stackalloc sbyte[KQuant.QK];
        int* scales = stackalloc int[16];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x += KQuant.Q8BlockBytes)
        {
            for (int half = 0; half < 2; half++)
            {
                byte* ql = w + 64 * half;
                byte* qh = w + HighBitsOffset + 32 * half;
                sbyte* a = levels + 128 * half;
                for (int l = 0; l < 32; l++)
                {
                    a[l] = (sbyte)(((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32);
                    a[l + 32] = (sbyte)(((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32);
                    a[l + 64] = (sbyte)(((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32);
                    a[l + 96] = (sbyte)(((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32);
                }
            }
            for (int g = 0; g < 16; g++) scales[g] = (sbyte)w[ScalesOffset + g];
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            KQuant.AccumulateLanes(levels, (sbyte*)(x + KQuant.Q8Quants), scales, aux32);
            float d = KQuant.Half(w + DeltaOffset) * *(float*)x;
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
        }
        float sumf = 0;
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    internal static void TileAvx2(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
        => KQuant.RunTile(&RowAvx2<TwoColumns>, &RowAvx2<OneColumn>, w, wStride, rows, x, xStride, cols, blocks, y, yStride);

    internal static void TileVector128(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
        => KQuant.RunTile(&DotVector128, w, wStride, rows, x, xStride, cols, blocks, y, yStride);

    private static void RowAvx2<TCols>(byte* w, byte* x0, byte* x1, int blocks, float* y0, float* y1) where TCols : struct, IColumnCount
    {
        var lowNibble = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        Vector256<byte> chunk0 = KQuant.ShortBroadcastMask(0), chunk1 = KQuant.ShortBroadcastMask(1);
        Vector256<byte> chunk2 = KQuant.ShortBroadcastMask(2), chunk3 = KQuant.ShortBroadcastMask(3);
        Vector128<byte> evenOdd = KQuant.EvenOddMask;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x0 += KQuant.Q8BlockBytes, x1 += KQuant.Q8BlockBytes)
        {
            Vector128<sbyte> rawScales = Sse2.LoadVector128((sbyte*)(w + ScalesOffset));
            Vector256<short> scales = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(rawScales, evenOdd.AsSByte()));
            Vector256<short> orderedScales = Avx2.ConvertToVector256Int16(rawScales);

            var sum0 = Vector256<int>.Zero;
            var sum1 = Vector256<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                Vector256<byte> ql0 = Avx.LoadVector256(w + 64 * half);
                Vector256<byte> ql1 = Avx.LoadVector256(w + 64 * half + 32);
                Vector256<ushort> qh = Avx.LoadVector256((ushort*)(w + HighBitsOffset + 32 * half));
                // Each qh byte's bit pairs 0..3 become bits 4-5 of the four 32-value chunks' levels.
                Vector256<byte> q0 = (ql0 & lowNibble) | (Avx2.ShiftLeftLogical(qh, 4).AsByte() & bits45);
                Vector256<byte> q1 = (ql1 & lowNibble) | (Avx2.ShiftLeftLogical(qh, 2).AsByte() & bits45);
                Vector256<byte> q2 = (Avx2.ShiftRightLogical(ql0.AsUInt16(), 4).AsByte() & lowNibble) | (qh.AsByte() & bits45);
                Vector256<byte> q3 = (Avx2.ShiftRightLogical(ql1.AsUInt16(), 4).AsByte() & lowNibble) | (Avx2.ShiftRightLogical(qh, 2).AsByte() & bits45);
                Vector256<short> s0 = KQuant.BroadcastShort(scales, chunk0), s1 = KQuant.BroadcastShort(scales, chunk1);
                Vector256<short> s2 = KQuant.BroadcastShort(scales, chunk2), s3 = KQuant.BroadcastShort(scales, chunk3);
                scales = Avx2.ShiftRightLogical128BitLane(scales, 8);

                byte* q8 = x0 + KQuant.Q8Quants + 128 * half;
                sum0 += KQuant.ScaledDot(q0, q8, s0) + KQuant.ScaledDot(q1, q8 + 32, s1)
                      + KQuant.ScaledDot(q2, q8 + 64, s2) + KQuant.ScaledDot(q3, q8 + 96, s3);
                if (TCols.Two)
                {
                    q8 = x1 + KQuant.Q8Quants + 128 * half;
                    sum1 += KQuant.ScaledDot(q0, q8, s0) + KQuant.ScaledDot(q1, q8 + 32, s1)
                          + KQuant.ScaledDot(q2, q8 + 64, s2) + KQuant.ScaledDot(q3, q8 + 96, s3);
                }
            }

            // The pair's second lane (the first scale bytes) is unused.
            Vector128<float> d = KQuant.HalfPair(w + DeltaOffset);
            acc0 = Accumulate(acc0, sum0, orderedScales, x0, d);
            if (TCols.Two) acc1 = Accumulate(acc1, sum1, orderedScales, x1, d);
        }
        *y0 = Vector256.Sum(acc0);
        if (TCols.Two) *y1 = Vector256.Sum(acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> sum, Vector256<short> orderedScales, byte* q8Block, Vector128<float> d)
    {
        Vector256<int> offset = Avx2.MultiplyAddAdjacent(Avx.LoadVector256((short*)(q8Block + KQuant.Q8Bsums)), orderedScales);
        sum -= Avx2.ShiftLeftLogical(offset, 5);
        return Fma.MultiplyAdd(Avx2.BroadcastScalarToVector256(d * Vector128.CreateScalarUnsafe(*(float*)q8Block)), Avx.ConvertToVector256Single(sum), acc);
    }

    private static float DotVector128(byte* w, byte* x, int blocks)
    {
        var lowNibble = Vector128.Create((byte)0x0F);
        var bits45 = Vector128.Create((byte)0x30);
        var bias = Vector128.Create((byte)32);
        var acc = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x += KQuant.Q8BlockBytes)
        {
            sbyte* sc = (sbyte*)(w + ScalesOffset);
            var sum = Vector128<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                for (int part = 0; part < 2; part++)
                {
                    Vector128<byte> ql0 = Vector128.Load(w + 64 * half + 16 * part);
                    Vector128<byte> ql1 = Vector128.Load(w + 64 * half + 32 + 16 * part);
                    Vector128<byte> qh = Vector128.Load(w + HighBitsOffset + 32 * half + 16 * part);
                    Vector128<sbyte> q0 = (((ql0 & lowNibble) | (Vector128.ShiftLeft(qh, 4) & bits45)) - bias).AsSByte();
                    Vector128<sbyte> q1 = (((ql1 & lowNibble) | (Vector128.ShiftLeft(qh, 2) & bits45)) - bias).AsSByte();
                    Vector128<sbyte> q2 = ((Vector128.ShiftRightLogical(ql0, 4) | (qh & bits45)) - bias).AsSByte();
                    Vector128<sbyte> q3 = ((Vector128.ShiftRightLogical(ql1, 4) | (Vector128.ShiftRightLogical(qh, 2) & bits45)) - bias).AsSByte();
                    sbyte* q8 = (sbyte*)(x + KQuant.Q8Quants) + 128 * half + 16 * part;
                    int g = 8 * half + part;
                    sum += KQuant.Fold(KQuant.MultiplyFold(q0, Vector128.Load(q8))) * (int)sc[g]
                         + KQuant.Fold(KQuant.MultiplyFold(q1, Vector128.Load(q8 + 32))) * (int)sc[g + 2]
                         + KQuant.Fold(KQuant.MultiplyFold(q2, Vector128.Load(q8 + 64))) * (int)sc[g + 4]
                         + KQuant.Fold(KQuant.MultiplyFold(q3, Vector128.Load(q8 + 96))) * (int)sc[g + 6];
                }
            }
            acc += Vector128.Create(KQuant.Half(w + DeltaOffset) * *(float*)x) * Vector128.ConvertToSingle(sum);
        }
        return Vector128.Sum(acc);
    }
}
