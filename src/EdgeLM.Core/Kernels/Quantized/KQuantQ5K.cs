using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// block_q5_K { half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] } against block_q8_K: Q4_K plus a fifth
/// bit per value (bit 2c of qh[l] for the low nibbles of chunk c, bit 2c+1 for the high ones), same scales and mins.
/// </summary>
public unsafe struct Q5_KKernel : IWeightKernel
{
    private const int BlockBytes = 176;
    private const int ScalesOffset = 4;
    private const int HighBitsOffset = 16;
    private const int QuantsOffset = 48;

    public static GgmlType WeightType => GgmlType.Q5_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;

    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
    {
        int blocks = KQuant.Blocks(GgmlType.Q5_K, k);
        KQuant.CheckTile(GgmlType.Q5_K, rows, cols);
        if (Avx2.IsSupported && Fma.IsSupported) TileAvx2(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
        else TileVector128(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
    }

    /// <summary>ggml_vec_dot_q5_K_q8_K_generic, including its float summation order.</summary>
    public static float DotScalar(byte* w, byte* x, int k)
    {
        int blocks = KQuant.Blocks(GgmlType.Q5_K, k);
        sbyte* levels = stackalloc sbyte[KQuant.QK];
        int* scales = stackalloc int[16];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x += KQuant.Q8BlockBytes)
        {
            byte* qs = w + QuantsOffset;
            byte* qh = w + HighBitsOffset;
            int mask = 1;
            for (int chunk = 0; chunk < 4; chunk++, qs += 32, mask <<= 2)
            {
                for (int l = 0; l < 32; l++) levels[64 * chunk + l] = (sbyte)((qs[l] & 0xF) + ((qh[l] & mask) != 0 ? 16 : 0));
                for (int l = 0; l < 32; l++) levels[64 * chunk + 32 + l] = (sbyte)((qs[l] >> 4) + ((qh[l] & (mask << 1)) != 0 ? 16 : 0));
            }
            KQuant.UnpackScalesK4(w + ScalesOffset, out uint s0, out uint s1, out uint m0, out uint m1);
            ulong scaleBytes = s0 | (ulong)s1 << 32, minBytes = m0 | (ulong)m1 << 32;
            for (int g = 0; g < 16; g++) scales[g] = (int)(scaleBytes >> (8 * (g / 2)) & 0xFF);

            short* bsums = (short*)(x + KQuant.Q8Bsums);
            int sumMins = 0;
            for (int j = 0; j < 16; j++) sumMins += bsums[j] * (int)(minBytes >> (8 * (j / 2)) & 0xFF);

            for (int l = 0; l < 8; l++) aux32[l] = 0;
            KQuant.AccumulateLanes(levels, (sbyte*)(x + KQuant.Q8Quants), scales, aux32);
            float yd = *(float*)x;
            float d = KQuant.Half(w) * yd;
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
            float dmin = KQuant.Half(w + 2) * yd;
            sumf -= dmin * sumMins;
        }
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
        var bit4 = Vector256.Create((byte)0x10);
        var groupA = KQuant.ShortBroadcastMask(0);
        var groupB = KQuant.ShortBroadcastMask(1);
        var minPairs = Vector128.Create((byte)8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x0 += KQuant.Q8BlockBytes, x1 += KQuant.Q8BlockBytes)
        {
            KQuant.UnpackScalesK4(w + ScalesOffset, out uint s0, out uint s1, out uint m0, out uint m1);
            Vector128<byte> packed = Vector128.Create(s0, s1, m0, m1).AsByte();
            Vector256<short> scales = Avx2.ConvertToVector256Int16(packed);
            scales = Avx2.Permute4x64(scales.AsInt64(), 0b01_00_01_00).AsInt16();
            Vector256<short> mins = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(packed, minPairs));

            // 16-bit shifts are safe: only bits 0 and 1 of each byte are used after each two-bit step (at most 6).
            Vector256<ushort> highBits = Avx.LoadVector256((ushort*)(w + HighBitsOffset));
            var sum0 = Vector256<int>.Zero;
            var sum1 = Vector256<int>.Zero;
            byte* qs = w + QuantsOffset;
            byte* q80 = x0 + KQuant.Q8Quants;
            byte* q81 = x1 + KQuant.Q8Quants;
            for (int chunk = 0; chunk < 4; chunk++, qs += 32, q80 += 64, q81 += 64)
            {
                Vector256<byte> bits = Avx.LoadVector256(qs);
                Vector256<byte> low = (bits & lowNibble) | (Avx2.ShiftLeftLogical(highBits, 4).AsByte() & bit4);
                Vector256<byte> high = (Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte() & lowNibble)
                                     | (Avx2.ShiftLeftLogical(highBits, 3).AsByte() & bit4);
                highBits = Avx2.ShiftRightLogical(highBits, 2);
                Vector256<short> scaleLow = KQuant.BroadcastShort(scales, groupA);
                Vector256<short> scaleHigh = KQuant.BroadcastShort(scales, groupB);
                scales = Avx2.ShiftRightLogical128BitLane(scales, 4);
                sum0 += KQuant.ScaledDot(low, q80, scaleLow) + KQuant.ScaledDot(high, q80 + 32, scaleHigh);
                if (TCols.Two) sum1 += KQuant.ScaledDot(low, q81, scaleLow) + KQuant.ScaledDot(high, q81 + 32, scaleHigh);
            }

            Vector128<float> deltas = KQuant.HalfPair(w);
            acc0 = Accumulate(acc0, sum0, mins, x0, deltas);
            if (TCols.Two) acc1 = Accumulate(acc1, sum1, mins, x1, deltas);
        }
        *y0 = Vector256.Sum(acc0);
        if (TCols.Two) *y1 = Vector256.Sum(acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> sum, Vector256<short> mins, byte* q8Block, Vector128<float> deltas)
    {
        Vector128<float> scaled = deltas * Vector128.Create(*(float*)q8Block);
        Vector256<int> minTerm = Avx2.MultiplyAddAdjacent(Avx.LoadVector256((short*)(q8Block + KQuant.Q8Bsums)), mins);
        acc = Fma.MultiplyAdd(Avx2.BroadcastScalarToVector256(scaled), Avx.ConvertToVector256Single(sum), acc);
        return Fma.MultiplyAddNegated(Avx2.BroadcastScalarToVector256(Avx.Permute(scaled, 0b01_01_01_01)), Avx.ConvertToVector256Single(minTerm), acc);
    }

    private static float DotVector128(byte* w, byte* x, int blocks)
    {
        var lowNibble = Vector128.Create((byte)0x0F);
        var bit4 = Vector128.Create((byte)0x10);
        var acc = Vector128<float>.Zero;
        float minAcc = 0;
        for (int b = 0; b < blocks; b++, w += BlockBytes, x += KQuant.Q8BlockBytes)
        {
            KQuant.UnpackScalesK4(w + ScalesOffset, out uint s0, out uint s1, out uint m0, out uint m1);
            ulong scaleBytes = s0 | (ulong)s1 << 32;
            Vector128<short> mins = Vector128.WidenLower(Vector128.Create(m0, m1, 0, 0).AsByte()).AsInt16();
            Vector128<short> minsLow = Vector128.Shuffle(mins, Vector128.Create((short)0, 0, 1, 1, 2, 2, 3, 3));
            Vector128<short> minsHigh = Vector128.Shuffle(mins, Vector128.Create((short)4, 4, 5, 5, 6, 6, 7, 7));

            Vector128<byte> highA = Vector128.Load(w + HighBitsOffset), highB = Vector128.Load(w + HighBitsOffset + 16);
            var sum = Vector128<int>.Zero;
            byte* qs = w + QuantsOffset;
            sbyte* q8 = (sbyte*)(x + KQuant.Q8Quants);
            for (int chunk = 0; chunk < 4; chunk++, qs += 32, q8 += 64, scaleBytes >>= 16)
            {
                Vector128<byte> bitsA = Vector128.Load(qs), bitsB = Vector128.Load(qs + 16);
                Vector128<byte> lowA = (bitsA & lowNibble) | (Vector128.ShiftLeft(highA, 4) & bit4);
                Vector128<byte> lowB = (bitsB & lowNibble) | (Vector128.ShiftLeft(highB, 4) & bit4);
                Vector128<byte> highNibA = Vector128.ShiftRightLogical(bitsA, 4) | (Vector128.ShiftLeft(highA, 3) & bit4);
                Vector128<byte> highNibB = Vector128.ShiftRightLogical(bitsB, 4) | (Vector128.ShiftLeft(highB, 3) & bit4);
                highA = Vector128.ShiftRightLogical(highA, 2);
                highB = Vector128.ShiftRightLogical(highB, 2);
                Vector128<short> low = KQuant.MultiplyFold(lowA.AsSByte(), Vector128.Load(q8))
                                     + KQuant.MultiplyFold(lowB.AsSByte(), Vector128.Load(q8 + 16));
                Vector128<short> high = KQuant.MultiplyFold(highNibA.AsSByte(), Vector128.Load(q8 + 32))
                                      + KQuant.MultiplyFold(highNibB.AsSByte(), Vector128.Load(q8 + 48));
                sum += KQuant.Fold(low) * (int)(scaleBytes & 0xFF) + KQuant.Fold(high) * (int)(scaleBytes >> 8 & 0xFF);
            }
            float yd = *(float*)x;
            acc += Vector128.Create(KQuant.Half(w) * yd) * Vector128.ConvertToSingle(sum);
            minAcc += KQuant.Half(w + 2) * yd * KQuant.BsumDot(x, minsLow, minsHigh);
        }
        return Vector128.Sum(acc) - minAcc;
    }
}
