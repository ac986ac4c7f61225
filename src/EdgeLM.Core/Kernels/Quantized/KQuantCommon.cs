using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// One k-quant super-block format (256 values against one block_q8_K), seen by <see cref="KQuantDot{TFormat}"/> as
/// eight 32-value sub-blocks of unsigned levels u (0..63), two scales per sub-block (one per 16 values) and one
/// factor per Q8_K bsum. A block's dot is then d * yd * (sum(scale * u . q8) - Offset * sum(factor * bsum))
/// - dmin * yd * sum(factor * bsum) when <see cref="HasMin"/> (Q2_K/Q4_K/Q5_K: value = d sc u - dmin m), else the
/// offset form (Q6_K: value = d sc (u - 32), Q3_K: d sc (u - 4), factor = sc), with every inner sum exact in 32-bit
/// integers.
/// </summary>
internal unsafe interface IKQuantFormat
{
    static abstract GgmlType Type { get; }
    static abstract int BlockBytes { get; }
    /// <summary>True: the bsum term is the min term, scaled by dmin. False: it is Offset times part of the integer sum.</summary>
    static abstract bool HasMin { get; }
    /// <summary>Offset formats: log2 of the offset (Q6_K 5: u - 32; Q3_K 2: u - 4); 0 with a min.</summary>
    static abstract int OffsetShift { get; }
    /// <summary>Byte offset of the half d (dmin, if any, follows it).</summary>
    static abstract int DeltaOffset { get; }

    /// <summary>
    /// scales: byte j = scale of values 32j..32j+15, byte 8+j = scale of 32j+16..32j+31 (the order the AVX2 lanes
    /// want); bsumFactors: byte g = factor of bsum g (values 16g..16g+15). All fit in a signed byte.
    /// </summary>
    static abstract void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors);

    /// <summary>Unsigned levels of sub-block j (values 32j..32j+31); j is a constant after inlining. AVX2 only.</summary>
    static abstract Vector256<byte> Levels256(byte* block, int j);

    /// <summary>Unsigned levels of sub-block j (any j), values 32j..32j+15 and 32j+16..32j+31.</summary>
    static abstract void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high);

    /// <summary>
    /// ggml's generic view of one block: 256 signed levels as its scalar dot builds them, the scale of each 16 values
    /// and the min of each 16 values (ignored unless <see cref="HasMin"/>).
    /// </summary>
    static abstract void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins);
}

/// <summary>
/// Pieces shared by the k-quant kernels (Q4_K..Q6_K against Q8_K activations): block_q8_K offsets, validation,
/// the 6-bit scale unpacking of Q4_K/Q5_K and ggml's 8-lane scalar accumulation.
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => HalfPrecision.FromF16(*(ushort*)p);

    /// <summary>
    /// The two IEEE halves at <paramref name="p"/> as floats in lanes 0 and 1, exactly as
    /// <see cref="HalfPrecision.FromF16"/> but branch-free: the 15 magnitude bits moved to float position and
    /// rescaled by 2^112 (0x77800000) cover normals and subnormals; an all-ones exponent is patched to inf/NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfPair(byte* p) =>
        HalfsToFloats(Vector128.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(p)).AsUInt16()));

    /// <summary>The half at <paramref name="p"/> in lane 0 (other lanes 0), as <see cref="HalfPair"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> HalfOne(byte* p) => HalfsToFloats(Vector128.CreateScalar((uint)Unsafe.ReadUnaligned<ushort>(p)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfsToFloats(Vector128<uint> h)
    {
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
    /// The 16 scale bytes of Q4_K/Q5_K in <see cref="IKQuantFormat.Scales"/> order, and the mins per bsum: the kmask
    /// unpacking done on the four dwords at once (8 vector instructions instead of ~25 scalar ones and 4 inserts).
    /// Reads 16 bytes: the 12 scale bytes and the first 4 quant bytes that follow them in the block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScalesK4(byte* packed, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors)
    {
        Vector128<uint> a = Vector128.Load((uint*)packed);   // a0, a1, a2, (quants)
        // Wanted dwords: a0 & k1, (a2 & k2) | ((a0 >> 6) & k3) << 4, a1 & k1, ((a2 >> 4) & k2) | ((a1 >> 6) & k3) << 4.
        Vector128<uint> lowSource = Vector128.Shuffle(a, Vector128.Create(0u, 2, 1, 2));
        lowSource = Vector128.ConditionalSelect(Vector128.Create(0, 0, 0, ~0u), Vector128.ShiftRightLogical(lowSource, 4), lowSource);
        Vector128<uint> low = lowSource & Vector128.Create(0x3f3f3f3fu, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
        Vector128<uint> high = Vector128.ShiftRightLogical(Vector128.Shuffle(a, Vector128.Create(0u, 0, 1, 1)), 2)
                             & Vector128.Create(0u, 0x30303030, 0, 0x30303030);
        var both = (low | high).AsSByte();
        // One scale per 32 values: both halves of sub-block j use scale j. Min j covers bsums 2j and 2j+1.
        scales = Vector128.Shuffle(both, Vector128.Create((sbyte)0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7));
        bsumFactors = Vector128.Shuffle(both, Vector128.Create((sbyte)8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
    }

    /// <summary>Q4_K/Q5_K 6-bit scales and mins per 16 values, as get_scale_min_k4 gives them to ggml's generic dot.</summary>
    public static void ReferenceScalesK4(byte* packed, int* scales, int* mins)
    {
        UnpackScalesK4(packed, out uint s0, out uint s1, out uint m0, out uint m1);
        ulong scaleBytes = s0 | (ulong)s1 << 32, minBytes = m0 | (ulong)m1 << 32;
        for (int g = 0; g < 16; g++)
        {
            scales[g] = (int)(scaleBytes >> (8 * (g / 2)) & 0xFF);
            mins[g] = (int)(minBytes >> (8 * (g / 2)) & 0xFF);
        }
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

    /// <summary>Unsigned nibbles of 32 packed bytes: the low ones, or the high ones (two instructions each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Nibbles256(byte* qs, bool high)
    {
        var bits = Vector256.Load(qs);
        if (high) bits = Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte();
        return bits & Vector256.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Nibbles128(byte* qs, bool high, out Vector128<sbyte> low, out Vector128<sbyte> upper)
    {
        var mask = Vector128.Create((byte)0x0F);
        Vector128<byte> a = Vector128.Load(qs), b = Vector128.Load(qs + 16);
        if (high) { a = Vector128.ShiftRightLogical(a, 4); b = Vector128.ShiftRightLogical(b, 4); }
        low = (a & mask).AsSByte();
        upper = (b & mask).AsSByte();
    }

    /// <summary>
    /// Bits <paramref name="shift"/>.. of every byte of v moved to bit <paramref name="to"/>.. (16-bit shifts: the
    /// bits kept never cross a byte boundary, since callers mask to bits taken from the same byte). The switch
    /// folds away for constant arguments and keeps the immediate-count shift forms.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> MoveBits(Vector256<byte> v, int shift, int to)
    {
        var u = v.AsUInt16();
        return (to - shift) switch
        {
            0 => v,
            1 => Avx2.ShiftLeftLogical(u, 1).AsByte(),
            2 => Avx2.ShiftLeftLogical(u, 2).AsByte(),
            3 => Avx2.ShiftLeftLogical(u, 3).AsByte(),
            4 => Avx2.ShiftLeftLogical(u, 4).AsByte(),
            -1 => Avx2.ShiftRightLogical(u, 1).AsByte(),
            -2 => Avx2.ShiftRightLogical(u, 2).AsByte(),
            -3 => Avx2.ShiftRightLogical(u, 3).AsByte(),
            -4 => Avx2.ShiftRightLogical(u, 4).AsByte(),
            -5 => Avx2.ShiftRightLogical(u, 5).AsByte(),
            -6 => Avx2.ShiftRightLogical(u, 6).AsByte(),
            _ => throw new ArgumentOutOfRangeException(nameof(shift)),
        };
    }
}

/// <summary>
/// y += scale * (q . x) over 32 values, in 8 int lanes: maddubs (u8 x s8 pairs, exact: |pair| &lt;= 2 * 63 * 127)
/// then a 16-bit multiply-add with the scales.
/// </summary>
internal interface IScaledDot256
{
    static abstract Vector256<int> Add(Vector256<int> acc, Vector256<byte> q, Vector256<sbyte> x, Vector256<short> scales);
}

internal struct Avx2ScaledDot : IScaledDot256
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> q, Vector256<sbyte> x, Vector256<short> scales)
        => acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x), scales);
}

/// <summary>vpdpwssd folds the scale multiply-add and the accumulation into one instruction.</summary>
internal struct VnniScaledDot : IScaledDot256
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> q, Vector256<sbyte> x, Vector256<short> scales)
        => AvxVnni.MultiplyWideningAndAdd(acc, Avx2.MultiplyAddAdjacent(q, x), scales);
}

/// <summary>Number of activation columns one AVX2 pass serves with each decoded weight sub-block.</summary>
internal interface IColumnCount { static abstract int Count { get; } }
internal struct OneColumn : IColumnCount { public static int Count => 1; }
internal struct FourColumns : IColumnCount { public static int Count => 4; }

/// <summary>
/// The tiles of every k-quant format. Each output is one accumulation over its super-blocks in order (per block: exact
/// integer sums, then one or two FMAs into 8 float lanes; one horizontal sum at the end), the same code whether it is
/// computed alone or in a prefill tile of four activation columns, so results do not
/// depend on how the caller tiles.
/// </summary>
internal static unsafe class KQuantDot<TFormat> where TFormat : unmanaged, IKQuantFormat
{
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
    {
        int blocks = KQuant.Blocks(TFormat.Type, k);
        KQuant.CheckTile(TFormat.Type, rows, cols);
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            if (AvxVnni.IsSupported) TileAvx2<VnniScaledDot>(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
            else TileAvx2<Avx2ScaledDot>(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            if (Dp.IsSupported) Tile128<DpDot>(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
            else Tile128<PortableDot>(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
        }
        else TileScalar(w, wStride, rows, x, xStride, cols, blocks, y, yStride);
    }

    /// <summary>ggml_vec_dot_qN_K_q8_K_generic, including its float summation order.</summary>
    public static float DotScalar(byte* w, byte* x, int k)
    {
        int blocks = KQuant.Blocks(TFormat.Type, k);
        sbyte* levels = stackalloc sbyte[KQuant.QK];
        int* scales = stackalloc int[16];
        int* mins = stackalloc int[16];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int b = 0; b < blocks; b++, w += TFormat.BlockBytes, x += KQuant.Q8BlockBytes)
        {
            TFormat.ReferenceBlock(w, levels, scales, mins);
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            KQuant.AccumulateLanes(levels, (sbyte*)(x + KQuant.Q8Quants), scales, aux32);
            float yd = *(float*)x;
            float d = KQuant.Half(w + TFormat.DeltaOffset) * yd;
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
            if (TFormat.HasMin)
            {
                short* bsums = (short*)(x + KQuant.Q8Bsums);
                int sumMins = 0;
                for (int j = 0; j < 16; j++) sumMins += bsums[j] * mins[j];
                float dmin = KQuant.Half(w + TFormat.DeltaOffset + 2) * yd;
                sumf -= dmin * sumMins;
            }
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    internal static void TileScalar(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
    {
        for (int c = 0; c < cols; c++)
            for (int r = 0; r < rows; r++)
                y[c * yStride + r] = DotScalar(w + r * wStride, x + c * xStride, blocks * KQuant.QK);
    }

    // ---- AVX2 ----

    /// <summary>
    /// Prefill: groups of four activation columns, each weight row decoded once per group (columns outer, so the four
    /// activation rows stay in L1 while the tile's weight rows stream). Decode and leftover columns: one row at a time
    /// (pairs of rows sharing the activation loads measured no faster for Q4_K/Q5_K and 3x slower for Q6_K).
    /// </summary>
    internal static void TileAvx2<TDot>(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
        where TDot : IScaledDot256
    {
        int c = 0;
        for (; c + 4 <= cols; c += 4)
            for (int r = 0; r < rows; r++)
                RowAvx2<TDot, FourColumns>(w + r * wStride, x + c * xStride, xStride, blocks, y + c * yStride + r, yStride);
        for (; c < cols; c++)
            for (int r = 0; r < rows; r++)
                RowAvx2<TDot, OneColumn>(w + r * wStride, x + c * xStride, xStride, blocks, y + c * yStride + r, yStride);
    }

    /// <summary>In-lane byte shuffle that broadcasts 16-bit element j of each 128-bit lane: scale of sub-block j's halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> SubBlockScales(Vector256<short> scales, int j)
    {
        byte lo = (byte)(2 * j), hi = (byte)(2 * j + 1);
        var mask = Vector256.Create(lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi,
                                    lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi);
        return Avx2.Shuffle(scales.AsByte(), mask).AsInt16();
    }

    /// <summary>A block's scales widened to 16 bits: low lane for the first 16 values of each sub-block, high lane for the rest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> WidenScales(Vector128<sbyte> scales, Vector128<sbyte> bsumFactors, out Vector256<short> factors)
    {
        factors = Avx2.ConvertToVector256Int16(bsumFactors);
        // Offset formats subtract 2^OffsetShift * sum(sc * bsum): |sc * 32| <= 4096 still fits 16 bits, |bsum| <= 16 * 127.
        if (!TFormat.HasMin) factors = TFormat.OffsetShift == 5 ? Avx2.ShiftLeftLogical(factors, 5) : Avx2.ShiftLeftLogical(factors, 2);
        return Avx2.ConvertToVector256Int16(scales);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Activations(byte* q8Block, int j) => Vector256.Load((sbyte*)(q8Block + KQuant.Q8Quants + 32 * j));

    /// <summary>
    /// The float step of one block for one output, shared by every AVX2 tile shape so they agree bit for bit:
    /// acc + d yd (sum - offset term), or acc + d yd sum - dmin yd (mins . bsums).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Finish(Vector256<float> acc, Vector256<int> sum, Vector256<short> factors, byte* wb, byte* q8Block)
    {
        Vector256<int> bsumTerm = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(q8Block + KQuant.Q8Bsums)), factors);
        if (!TFormat.HasMin) sum -= bsumTerm;
        // d and dmin converted in registers: a half table costs a dependent load per block that misses cache when
        // other work shares the core's L2.
        Vector128<float> halfs = TFormat.HasMin ? KQuant.HalfPair(wb + TFormat.DeltaOffset) : KQuant.HalfOne(wb + TFormat.DeltaOffset);
        Vector128<float> scaled = halfs * Vector128.Create(*(float*)q8Block);
        acc = Fma.MultiplyAdd(Avx2.BroadcastScalarToVector256(scaled), Avx.ConvertToVector256Single(sum), acc);
        if (TFormat.HasMin)
            acc = Fma.MultiplyAddNegated(Avx2.BroadcastScalarToVector256(Avx.Permute(scaled, 0b01_01_01_01)), Avx.ConvertToVector256Single(bsumTerm), acc);
        return acc;
    }

    /// <summary>Sub-block j of one weight row against TCols activation columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock<TDot, TCols>(byte* wb, int j, Vector256<short> scales, byte* x0, byte* x1, byte* x2, byte* x3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
        where TDot : IScaledDot256 where TCols : IColumnCount
    {
        Vector256<byte> q = TFormat.Levels256(wb, j);
        Vector256<short> sc = SubBlockScales(scales, j);
        s0 = TDot.Add(s0, q, Activations(x0, j), sc);
        if (TCols.Count == 4)
        {
            s1 = TDot.Add(s1, q, Activations(x1, j), sc);
            s2 = TDot.Add(s2, q, Activations(x2, j), sc);
            s3 = TDot.Add(s3, q, Activations(x3, j), sc);
        }
    }

    /// <summary>One weight row against 1 or 4 activation columns: y[0], y[yStride], ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // Tier-0 code would call every unrolled helper
    private static void RowAvx2<TDot, TCols>(byte* w, byte* x, long xStride, int blocks, float* y, long yStride)
        where TDot : IScaledDot256 where TCols : IColumnCount
    {
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int b = 0; b < blocks; b++, w += TFormat.BlockBytes)
        {
            long xo = (long)b * KQuant.Q8BlockBytes;
            byte* b0 = x0 + xo, b1 = x1 + xo, b2 = x2 + xo, b3 = x3 + xo;
            TFormat.Scales(w, out var rawScales, out var rawFactors);
            Vector256<short> scales = WidenScales(rawScales, rawFactors, out var factors);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Unrolled so each sub-block's level extraction and scale broadcast use constants.
            SubBlock<TDot, TCols>(w, 0, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 1, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 2, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 3, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 4, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 5, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 6, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            SubBlock<TDot, TCols>(w, 7, scales, b0, b1, b2, b3, ref s0, ref s1, ref s2, ref s3);
            acc0 = Finish(acc0, s0, factors, w, b0);
            if (TCols.Count == 4)
            {
                acc1 = Finish(acc1, s1, factors, w, b1);
                acc2 = Finish(acc2, s2, factors, w, b2);
                acc3 = Finish(acc3, s3, factors, w, b3);
            }
        }
        y[0] = Vector256.Sum(acc0);
        if (TCols.Count == 4)
        {
            y[yStride] = Vector256.Sum(acc1);
            y[2 * yStride] = Vector256.Sum(acc2);
            y[3 * yStride] = Vector256.Sum(acc3);
        }
    }

    // ---- Vector128 (SSE without AVX2, Arm with or without sdot) ----

    internal static void Tile128<TDot>(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride)
        where TDot : IDot128
    {
        for (int c = 0; c < cols; c++)
            for (int r = 0; r < rows; r++)
                y[c * yStride + r] = Dot128<TDot>(w + r * wStride, x + c * xStride, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // Tier-0 code would call every unrolled helper
    private static float Dot128<TDot>(byte* w, byte* x, int blocks) where TDot : IDot128
    {
        var acc = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++, w += TFormat.BlockBytes, x += KQuant.Q8BlockBytes)
        {
            TFormat.Scales(w, out var scales, out var factors);
            var sum = Vector128<int>.Zero;
            sbyte* q8 = (sbyte*)(x + KQuant.Q8Quants);
            for (int j = 0; j < 8; j++, q8 += 32)
            {
                TFormat.Levels128(w, j, out var low, out var high);
                sum += TDot.Dot(Vector128<int>.Zero, low, Vector128.Load(q8)) * (int)scales.GetElement(j)
                     + TDot.Dot(Vector128<int>.Zero, high, Vector128.Load(q8 + 16)) * (int)scales.GetElement(8 + j);
            }
            short* bsums = (short*)(x + KQuant.Q8Bsums);
            var (f0, f1) = Vector128.Widen(factors);
            var (b00, b01) = Vector128.Widen(Vector128.Load(bsums));
            var (b10, b11) = Vector128.Widen(Vector128.Load(bsums + 8));
            var (f00, f01) = Vector128.Widen(f0);
            var (f10, f11) = Vector128.Widen(f1);
            Vector128<int> bsumTerm = b00 * f00 + b01 * f01 + b10 * f10 + b11 * f11;
            float yd = *(float*)x;
            if (!TFormat.HasMin) sum -= bsumTerm << TFormat.OffsetShift;
            acc = Vector128.MultiplyAddEstimate(Vector128.Create(KQuant.Half(w + TFormat.DeltaOffset) * yd), Vector128.ConvertToSingle(sum), acc);
            if (TFormat.HasMin)
                acc -= Vector128.Create(KQuant.Half(w + TFormat.DeltaOffset + 2) * yd) * Vector128.ConvertToSingle(bsumTerm);
        }
        return Vector128.Sum(acc);
    }
}
