using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Pieces shared by the k-quant kernels (Q2_K..Q6_K against Q8_K activations): block_q8_K offsets, validation,
/// the 6-bit scale unpacking of Q4_K/Q5_K, ggml's 8-lane scalar accumulation, and the column-count switch that
/// lets one AVX2 row kernel serve one or two activation columns.
/// </summary>
internal static unsafe class KQuant
{
    public const int QK = GgmlTypeInfo.QK_K;

    // block_q8_K { float d; int8 qs[256]; int16 bsums[16] }.
    public const int Q8BlockBytes = 4 + QK + QK / 16 * 2;
    public const int Q8Quants = 4;
    public const int Q8Bsums = 4 + QK;

    /// <summary>Number of 256-value blocks in a row of <paramref name="k"/> values; rejects anything else.</summary>
    public static int Blocks(GgmlType type, int k)
    {
        if (k <= 0 || k % QK != 0)
            throw new ArgumentException($"{type} kernel: row length {k} is not a positive multiple of {QK}", nameof(k));
        return k / QK;
    }

    public static void CheckTile(GgmlType type, int rows, int cols)
    {
        if (rows < 0 || cols < 0)
            throw new ArgumentOutOfRangeException(nameof(rows), $"{type} kernel: negative tile {rows} x {cols}");
    }

    /// <summary>
    /// Walks a tile with a row kernel that handles one weight row against one or two activation columns
    /// (pairs share the weight unpacking; the indirect call is per row, not per block).
    /// </summary>
    public static void RunTile(
        delegate*<byte*, byte*, byte*, int, float*, float*, void> pairKernel,
        delegate*<byte*, byte*, byte*, int, float*, float*, void> singleKernel,
        byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
    {
        for (int r = 0; r < rows; r++)
        {
            byte* row = w + r * wStride;
            int c = 0;
            for (; c + 2 <= cols; c += 2)
                pairKernel(row, x + c * xStride, x + (c + 1) * xStride, blocks, y + c * yStride + r, y + (c + 1) * yStride + r);
            if (c < cols) singleKernel(row, x + c * xStride, x + c * xStride, blocks, y + c * yStride + r, null);
        }
    }

    /// <summary>Walks a tile one dot product at a time (the portable path, where nothing is shared).</summary>
    public static void RunTile(delegate*<byte*, byte*, int, float> dot,
        byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
    {
        for (int c = 0; c < cols; c++)
            for (int r = 0; r < rows; r++)
                y[c * yStride + r] = dot(w + r * wStride, x + c * xStride, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => HalfPrecision.FromF16(*(ushort*)p);

    /// <summary>
    /// The two IEEE halves at <paramref name="p"/> (d and dmin of a block) as floats in lanes 0 and 1, exactly as
    /// <see cref="HalfPrecision.FromF16"/> but branch-free: the 15 magnitude bits moved to float position and
    /// rescaled by 2^112 (0x77800000) cover normals and subnormals; an all-ones exponent is patched to inf/NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfPair(byte* p)
    {
        Vector128<uint> h = Vector128.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(p)).AsUInt16());
        Vector128<uint> magnitude = (h & Vector128.Create(0x7FFFu)) << 13;
        Vector128<float> value = magnitude.AsSingle() * Vector128.Create(0x77800000u).AsSingle();
        Vector128<uint> infOrNaN = Vector128.Equals(h & Vector128.Create(0x7C00u), Vector128.Create(0x7C00u));
        value = Vector128.ConditionalSelect(infOrNaN.AsSingle(), (magnitude | Vector128.Create(0x7F800000u)).AsSingle(), value);
        return (value.AsUInt32() | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>
    /// ggml's kmask trick for the 12 scale bytes of Q4_K/Q5_K: eight 6-bit scales land in bytes 0..7 of
    /// (scales0, scales1) and eight 6-bit mins in bytes 0..7 of (mins0, mins1), the same as get_scale_min_k4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackScalesK4(byte* packed, out uint scales0, out uint scales1, out uint mins0, out uint mins1)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint a0 = Unsafe.ReadUnaligned<uint>(packed);
        uint a1 = Unsafe.ReadUnaligned<uint>(packed + 4);
        uint a2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        scales0 = a0 & kmask1;
        scales1 = (a2 & kmask2) | (((a0 >> 6) & kmask3) << 4);
        mins0 = a1 & kmask1;
        mins1 = ((a2 >> 4) & kmask2) | (((a1 >> 6) & kmask3) << 4);
    }

    /// <summary>
    /// The integer core of ggml's generic k-quant dot: aux32[l] += scale(g) * a[i] * q8[i] for i = 16g + 8h + l,
    /// where <paramref name="scales"/> holds one scale per 16 values. Integer sums are exact, so this equals
    /// ggml's per-type loops whatever grouping they use.
    /// </summary>
    public static void AccumulateLanes(sbyte* a, sbyte* q8, int* scales, int* aux32)
    {
        for (int g = 0; g < QK / 16; g++)
        {
            int scale = scales[g];
            for (int half = 0; half < 2; half++)
            {
                int i0 = 16 * g + 8 * half;
                for (int l = 0; l < 8; l++) aux32[l] += scale * (short)(q8[i0 + l] * a[i0 + l]);
            }
        }
    }

    /// <summary>Sixteen products widened to shorts and folded to eight (each sum of two products fits in 16 bits
    /// for every k-quant level range against |q8| &lt;= 127).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> MultiplyFold(Vector128<sbyte> a, Vector128<sbyte> b)
        => Vector128.WidenLower(a) * Vector128.WidenLower(b) + Vector128.WidenUpper(a) * Vector128.WidenUpper(b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Fold(Vector128<short> v) => Vector128.WidenLower(v) + Vector128.WidenUpper(v);

    /// <summary>Sum of 16 bsums times one small scale each, as ggml's mins term.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BsumDot(byte* q8Block, Vector128<short> lowScales, Vector128<short> highScales)
    {
        // |bsum| reaches 16 * 127, so the products need 32 bits.
        short* bsums = (short*)(q8Block + Q8Bsums);
        Vector128<short> low = Vector128.Load(bsums), high = Vector128.Load(bsums + 8);
        Vector128<int> sum = Vector128.WidenLower(low) * Vector128.WidenLower(lowScales) + Vector128.WidenUpper(low) * Vector128.WidenUpper(lowScales)
                           + Vector128.WidenLower(high) * Vector128.WidenLower(highScales) + Vector128.WidenUpper(high) * Vector128.WidenUpper(highScales);
        return Vector128.Sum(sum);
    }

    /// <summary>
    /// q * q8 summed over adjacent byte pairs (vpmaddubsw; q unsigned and small enough never to saturate),
    /// then times 16-bit scales summed over adjacent pairs (vpmaddwd).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ScaledDot(Vector256<byte> q, byte* q8, Vector256<short> scales)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)q8)), scales);

    /// <summary>Broadcasts 16-bit element <c>i</c> (0..7) of each 128-bit lane to the whole lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> BroadcastShort(Vector256<short> v, Vector256<byte> mask)
        => Avx2.Shuffle(v.AsByte(), mask).AsInt16();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> ShortBroadcastMask(int i)
    {
        byte lo = (byte)(2 * i), hi = (byte)(2 * i + 1);
        return Vector256.Create(lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi,
                                lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi);
    }

    /// <summary>Byte order that puts even-indexed scales in the low 8 bytes and odd ones in the high 8, so that after
    /// widening to 16 bits one in-lane broadcast gives scale 2i to the low 16 values of a 32-value chunk and 2i+1
    /// to the high 16.</summary>
    public static Vector128<byte> EvenOddMask => Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
}

/// <summary>How many activation columns one AVX2 row pass serves (constant-folded per instantiation).</summary>
internal interface IColumnCount { static abstract bool Two { get; } }
internal struct OneColumn : IColumnCount { public static bool Two => false; }
internal struct TwoColumns : IColumnCount { public static bool Two => true; }
