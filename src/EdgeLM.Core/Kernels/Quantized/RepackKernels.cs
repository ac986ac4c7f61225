using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// GEMV and GEMM over <see cref="RepackedMatrix"/> panels with Q8_0 activations (ggml-cpu's gemv/gemm_q4_0_8x8_q8_0
/// family). Every output is one float lane: per 32-element block, the exact integer dot of its row with the token's
/// activation block, then acc = fma(d_w * d_x, (float)isum, acc) in block order. That one definition holds for every
/// path (scalar, Vector128, AVX2) and every tile (1 or 4 tokens), so decode and prefill give the same bits.
/// <para>
/// Activation side data (<see cref="ActivationInfoBytes"/> per block, from <see cref="ActivationInfoRow"/>): the block
/// scale times 2^112 as a float and the sum of its 32 levels. The 2^112 lets the kernels turn 8 weight half scales
/// into floats with two shifts and masks (the half's bits placed in a float, off by exactly 2^-112 for normals and
/// subnormals alike); both power-of-two factors are exact, so d_w * d_x rounds to the same float as the reference.
/// The level sum lets Q4_0/Q5_0 multiply unsigned nibbles (maddubs needs one unsigned operand) and subtract
/// offset * sum once per block for all 8 rows.
/// </para>
/// <para>
/// Q4_1 / Q5_1 (value = d * u + m) take the same Q8_0 activations, not ggml's Q8_1: the min term is m * d_x * sum(x),
/// and the exact level sum is already here (Q8_1 carries d_x * sum(x) rounded to a half). Per block, after the d term,
/// acc = fma(m_w * d_x, (float)sum(x), acc), again one definition for every path.
/// </para>
/// </summary>
public static unsafe partial class RepackKernels
{
    private const int BlockSize = 32;
    private const int ActivationBlockBytes = 34;
    public const int ActivationInfoBytes = 8;
    private const float TwoPow112 = 5.192296858534828e33f; // 2^112

    /// <summary>
    /// The integer dot product the quantized kernels (these panels, the k-quant panels and the unpacked block kernels)
    /// run on this machine, as their Tile methods dispatch: "avx-vnni", "avx512bw" (the Q4_0/Q5_0/Q8_0 prefill tile at 512
    /// bits, the rest as "avx2"), "avx2", "arm-dotprod", "vector128" or "scalar".
    /// </summary>
    public static string IntegerDotPath =>
        Avx2.IsSupported && Fma.IsSupported ? (AvxVnni.IsSupported ? "avx-vnni" : Avx512BW.IsSupported && Vector512.IsHardwareAccelerated ? "avx512bw" : "avx2")
        : Vector128.IsHardwareAccelerated ? (Dp.IsSupported ? "arm-dotprod" : "vector128")
        : "scalar";

    /// <summary>Fills the per-block side data of one Q8_0 activation row of <paramref name="blocks"/> blocks.</summary>
    public static void ActivationInfoRow(byte* xq, int blocks, byte* info)
    {
        for (int b = 0; b < blocks; b++)
        {
            byte* xb = xq + b * ActivationBlockBytes;
            int sum;
            if (Vector256.IsHardwareAccelerated)
            {
                var (low, high) = Vector256.Widen(Vector256.Load((sbyte*)(xb + 2)));
                sum = Vector256.Sum(low + high); // |sum| <= 32 * 127: fits in short lanes
            }
            else
            {
                sum = 0;
                for (int j = 0; j < BlockSize; j++) sum += (sbyte)xb[2 + j];
            }
            *(float*)(info + b * ActivationInfoBytes) = Block32Bits.Half(xb) * TwoPow112;
            *(int*)(info + b * ActivationInfoBytes + 4) = sum;
        }
    }

    /// <summary>
    /// y[c * yStride + 8p + i] = dot(row i of panel p, activation row c) for p &lt; panelCount, c &lt; cols. Panel p
    /// starts at panels + p * m.PanelStride; activation row c at x + c * xStride, its side data at info + c * infoStride.
    /// </summary>
    public static void Tile(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride)
    {
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            if (AvxVnni.IsSupported) TileAvx2<VnniByteDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
            // Not where .NET reports 512-bit vectors as not accelerated (CPUs that slow their clock for them). Q4_1 and
            // Q5_1 have no 512-bit tile (rare in real files; their min term would need its own pair kernels).
            else if (Avx512BW.IsSupported && Vector512.IsHardwareAccelerated && !RepackedMatrix.HasMin(m.Type))
                Tile512<Avx512ByteDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
            else TileAvx2<Avx2ByteDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
        }
        else if (Vector128.IsHardwareAccelerated) Tile128(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
        else TileScalar(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
    }

    /// <summary>The AVX2 tile with the byte dot product <typeparamref name="TDot"/>: the same bits whichever op runs.</summary>
    internal static void TileAvx2<TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride) where TDot : IByteDot256
    {
        switch (m.Type)
        {
            case GgmlType.Q4_0: TileAvx2<Q4_0Panel, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            case GgmlType.Q4_1: TileAvx2<Q4_1Panel, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            case GgmlType.Q5_0: TileAvx2<Q5_0Panel, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            case GgmlType.Q5_1: TileAvx2<Q5_1Panel, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            default: TileAvx2<Q8_0Panel, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
        }
    }

    internal static void Tile128(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride)
    {
        if (Dp.IsSupported) Tile128<DotProduct4>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
        else Tile128<PortableDot4>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
    }

    internal static void Tile128Portable(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride) =>
        Tile128<PortableDot4>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);

    // ---------------------------------------------------------------- scalar

    internal static void TileScalar(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride)
    {
        int blocks = m.Blocks;
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * m.PanelStride;
            for (int c = 0; c < cols; c++)
            {
                byte* xr = x + c * xStride;
                for (int i = 0; i < RepackedMatrix.PanelRows; i++)
                {
                    float acc = 0;
                    for (int b = 0; b < blocks; b++)
                    {
                        byte* record = panel + (long)b * m.BlockBytes;
                        byte* xb = xr + b * ActivationBlockBytes;
                        int isum = 0;
                        for (int e = 0; e < BlockSize; e++) isum += RepackedMatrix.Level(m.Type, record, i, e) * (sbyte)xb[2 + e];
                        float dx = HalfPrecision.FromF16(*(ushort*)xb);
                        acc = MathF.FusedMultiplyAdd(HalfPrecision.FromF16(*(ushort*)(record + 2 * i)) * dx, isum, acc);
                        if (RepackedMatrix.HasMin(m.Type))
                            acc = MathF.FusedMultiplyAdd(HalfPrecision.FromF16(*(ushort*)(record + 16 + 2 * i)) * dx, LevelSum(xb), acc);
                    }
                    y[c * yStride + p * RepackedMatrix.PanelRows + i] = acc;
                }
            }
        }
    }

    /// <summary>The sum of a Q8_0 activation block's 32 levels.</summary>
    private static int LevelSum(byte* xb)
    {
        int sum = 0;
        for (int e = 0; e < BlockSize; e++) sum += (sbyte)xb[2 + e];
        return sum;
    }

    /// <summary>The definition on the file's layout (weight row as in GGUF, activation as block_q8_0): the tests' reference.</summary>
    internal static float ReferenceDot(GgmlType type, byte* row, byte* xq, int k)
    {
        int fileBlock = GgmlTypeInfo.BlockBytes(type);
        float acc = 0;
        for (int b = 0; b < k / BlockSize; b++)
        {
            byte* wb = row + b * fileBlock, xb = xq + b * ActivationBlockBytes;
            int isum = 0;
            for (int e = 0; e < BlockSize; e++)
            {
                int level = type switch
                {
                    GgmlType.Q8_0 => Q8_0Format.Level(wb, e),
                    GgmlType.Q4_0 => Q4_0Format.Level(wb, e),
                    GgmlType.Q4_1 => Q4_1Format.Level(wb, e),
                    GgmlType.Q5_0 => Q5_0Format.Level(wb, e),
                    GgmlType.Q5_1 => Q5_1Format.Level(wb, e),
                    _ => throw new ArgumentException($"{type} has no panel layout"),
                };
                isum += level * (sbyte)xb[2 + e];
            }
            float dx = HalfPrecision.FromF16(*(ushort*)xb);
            acc = MathF.FusedMultiplyAdd(HalfPrecision.FromF16(*(ushort*)wb) * dx, isum, acc);
            if (RepackedMatrix.HasMin(type)) acc = MathF.FusedMultiplyAdd(HalfPrecision.FromF16(*(ushort*)(wb + 2)) * dx, LevelSum(xb), acc);
        }
        return acc;
    }

    // ---------------------------------------------------------------- AVX2 and AVX-VNNI

    /// <summary>
    /// Exact sums of unsigned-by-signed byte products into 8 int lanes, 4 adjacent products per lane (vpdpbusd's
    /// grouping), accumulated in runs: <see cref="Open"/> a run on a total, <see cref="Add"/> 32-byte groups to it,
    /// <see cref="Close"/> it into that total. What a run holds is the op's business, so the panel kernels have one body
    /// for both ops and differ only in this type parameter.
    /// <para>
    /// Both ops give the same integers, so the same bits: vpdpbusd adds each group of 4 products to 32-bit lanes without
    /// saturation, while the AVX2 op's maddubs saturates a pair of products to 16 bits and its runs add those pairs in
    /// 16-bit lanes (wrapping), which is exact only below 2^15. Every caller keeps within that: activations are Q8_0
    /// levels, |x| &lt;= 127 (ActivationQuantizer divides by amax / 127 and never yields -128), and the unsigned operand
    /// is at most 15 (Q4_0), 31 (Q5_0) or 128 (|w| of Q8_0), so one maddubs pair reaches 2 * 15 * 127 = 3810, 7874 or
    /// 32512 (&lt; 32767); runs are sized by format: Q4_0 a whole block (8 groups, 8 * 3810 = 30480), Q5_0 two groups
    /// (15748), Q8_0 one group. The integer sums are then exact in both, and integer addition is associative, so how
    /// either op groups the products does not matter. ExtremeLevelsDoNotSaturateAnyPath pins this on the AVX2 op.
    /// </para>
    /// </summary>
    internal interface IByteDot256
    {
        /// <summary>A run whose <see cref="Close"/> adds to <paramref name="total"/>.</summary>
        static abstract Vector256<int> Open(Vector256<int> total);
        /// <summary>The run plus, per lane, the 4 products of a's unsigned bytes with b's signed bytes.</summary>
        static abstract Vector256<int> Add(Vector256<int> run, Vector256<byte> a, Vector256<sbyte> b);
        /// <summary>The total the run was opened on plus the run's sums.</summary>
        static abstract Vector256<int> Close(Vector256<int> total, Vector256<int> run);
    }

    /// <summary>maddubs pairs summed in 16-bit lanes while the run is open, widened with one madd by ones on close.</summary>
    internal struct Avx2ByteDot : IByteDot256
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Open(Vector256<int> total) => Vector256<int>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Add(Vector256<int> run, Vector256<byte> a, Vector256<sbyte> b) =>
            (run.AsInt16() + Avx2.MultiplyAddAdjacent(a, b)).AsInt32();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Close(Vector256<int> total, Vector256<int> run) =>
            total + Avx2.MultiplyAddAdjacent(run.AsInt16(), Vector256.Create((short)1));
    }

    /// <summary>vpdpbusd straight into the total: the run is the total itself, one instruction per group.</summary>
    internal struct VnniByteDot : IByteDot256
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Open(Vector256<int> total) => total;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Add(Vector256<int> run, Vector256<byte> a, Vector256<sbyte> b) => AvxVnni.MultiplyWideningAndAdd(run, a, b);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Close(Vector256<int> total, Vector256<int> run) => run;
    }

    /// <summary>
    /// The 8 rows' scales times 2^-112 (see the class remarks), exact, in three instructions: each half sign-extended
    /// to 32 bits and shifted left 13 has its exponent and mantissa on bits 13..27 and copies of its sign on 28..31;
    /// the mask keeps the sign on bit 31 only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales256(byte* record) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)record), 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast256(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> scales, byte* info, Vector256<int> isum, Vector256<float> acc) =>
        Fma.MultiplyAdd(scales * Vector256.Create(*(float*)info), Avx.ConvertToVector256Single(isum), acc);

    /// <summary>acc + (m_w * d_x) * sum(x) for the 8 rows' mins (Q4_1 / Q5_1; record bytes 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> AccumulateMins(byte* record, byte* info, Vector256<float> acc) =>
        Fma.MultiplyAdd(Scales256(record + 16) * Vector256.Create(*(float*)info), Vector256.Create((float)*(int*)(info + 4)), acc);

    /// <summary>One block's d term and, for formats with a min, its m term: the per-block float step of every nibble kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> AccumulateBlock<TPanel>(Vector256<float> scales, byte* record, byte* info, Vector256<int> isum, Vector256<float> acc)
        where TPanel : INibbles
    {
        acc = Accumulate(scales, info, isum, acc);
        return TPanel.HasMin ? AccumulateMins(record, info, acc) : acc;
    }

    private static void TileAvx2<TPanel, TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride) where TPanel : IPanelAvx2 where TDot : IByteDot256
    {
        int blocks = m.Blocks;
        long panelStride = m.PanelStride;
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * panelStride;
            float* yp = y + p * RepackedMatrix.PanelRows;
            int c = 0;
            for (; c + 4 <= cols; c += 4)
                TPanel.Columns4<TDot>(panel, blocks, x + c * xStride, xStride, info + c * infoStride, infoStride, yp + c * yStride, yStride);
            for (; c < cols; c++)
                TPanel.Column1<TDot>(panel, blocks, x + c * xStride, info + c * infoStride, yp + c * yStride);
        }
    }

    private interface IPanelAvx2
    {
        static abstract void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256;
        static abstract void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256;
    }

    /// <summary>
    /// Q4_0 / Q5_0: unsigned levels u (0..15 or 0..31), level = u - Offset. Q4_1 / Q5_1: Offset 0 and a min per row
    /// (<see cref="HasMin"/>), value = d * u + m.
    /// </summary>
    private interface INibbles
    {
        static abstract int Offset { get; }
        static abstract bool HasMin { get; }
        static abstract int RecordBytes { get; }
        /// <summary>Record offset of the nibble groups; Q5_0 / Q5_1 keep their fifth bits in the 32 bytes before it.</summary>
        static abstract int NibbleOffset { get; }
        /// <summary>
        /// Whether one dot-product run (<see cref="IByteDot256"/>) may span a whole block of 8 groups: 16-bit lanes of at
        /// most 8 * 2 * 15 * 127 = 30480 for Q4_0; Q5_0 would reach 62992, so it closes a run every two groups (15748).
        /// </summary>
        static abstract bool Int16Block { get; }
        /// <summary>Levels u of groups j (low nibbles) and j + 4 (high nibbles).</summary>
        static abstract void Decode(byte* record, int j, out Vector256<byte> low, out Vector256<byte> high);
    }

    private struct Q4_0Panel : INibbles, IPanelAvx2
    {
        public static int Offset => 8;
        public static bool HasMin => false;
        public static int RecordBytes => 144;
        public static int NibbleOffset => 16;
        public static bool Int16Block => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* record, int j, out Vector256<byte> low, out Vector256<byte> high) =>
            DecodeFour(record + NibbleOffset, j, out low, out high);

        public static void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256 =>
            Q4Column1<Q4_0Panel, TDot>(panel, blocks, x, info, y);
        public static void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256 => NibbleColumns4<Q4_0Panel, TDot>(panel, blocks, x, xStride, info, infoStride, y, yStride);
    }

    private struct Q4_1Panel : INibbles, IPanelAvx2
    {
        public static int Offset => 0;
        public static bool HasMin => true;
        public static int RecordBytes => 160;
        public static int NibbleOffset => 32;
        public static bool Int16Block => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* record, int j, out Vector256<byte> low, out Vector256<byte> high) =>
            DecodeFour(record + NibbleOffset, j, out low, out high);

        public static void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256 =>
            Q4Column1<Q4_1Panel, TDot>(panel, blocks, x, info, y);
        public static void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256 => NibbleColumns4<Q4_1Panel, TDot>(panel, blocks, x, xStride, info, infoStride, y, yStride);
    }

    private struct Q5_0Panel : INibbles, IPanelAvx2
    {
        public static int Offset => 16;
        public static bool HasMin => false;
        public static int RecordBytes => 176;
        public static int NibbleOffset => 48;
        public static bool Int16Block => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* record, int j, out Vector256<byte> low, out Vector256<byte> high) =>
            DecodeFive(record + NibbleOffset - 32, record + NibbleOffset, j, out low, out high);

        public static void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256 =>
            Q5Column1<Q5_0Panel, TDot>(panel, blocks, x, info, y);
        public static void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256 => NibbleColumns4<Q5_0Panel, TDot>(panel, blocks, x, xStride, info, infoStride, y, yStride);
    }

    private struct Q5_1Panel : INibbles, IPanelAvx2
    {
        public static int Offset => 0;
        public static bool HasMin => true;
        public static int RecordBytes => 192;
        public static int NibbleOffset => 64;
        public static bool Int16Block => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* record, int j, out Vector256<byte> low, out Vector256<byte> high) =>
            DecodeFive(record + NibbleOffset - 32, record + NibbleOffset, j, out low, out high);

        public static void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256 =>
            Q5Column1<Q5_1Panel, TDot>(panel, blocks, x, info, y);
        public static void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256 => NibbleColumns4<Q5_1Panel, TDot>(panel, blocks, x, xStride, info, infoStride, y, yStride);
    }

    /// <summary>Levels of groups j (low nibbles) and j + 4 (high nibbles) from the nibble groups at <paramref name="nibbles"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DecodeFour(byte* nibbles, int j, out Vector256<byte> low, out Vector256<byte> high)
    {
        var raw = Vector256.Load(nibbles + 32 * j);
        var mask = Vector256.Create((byte)0x0F);
        low = raw & mask;
        high = Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
    }

    /// <summary><see cref="DecodeFour"/> plus the fifth bits at <paramref name="fifthBits"/> on bit 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DecodeFive(byte* fifthBits, byte* nibbles, int j, out Vector256<byte> low, out Vector256<byte> high)
    {
        var raw = Vector256.Load(nibbles + 32 * j);
        var fifth = Vector256.Load(fifthBits).AsUInt16();
        var mask = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((byte)0x10);
        // 16-bit shifts: bit j (or 4 + j) of each byte lands on bit 4 of the same byte; the mask drops the rest.
        low = (raw & mask) | ((fifth << (4 - j)).AsByte() & bit);
        high = (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask) | ((fifth >>> j).AsByte() & bit);
    }

    /// <summary>
    /// Q5_0 / Q5_1 decode, written out per group: in the generic loop the fifth-bit shifts take the group index as a
    /// variable count and every group widens its sums, which made Q5_0 compute-bound on one thread (~10 GB/s against
    /// Q4_0's ~18). Two groups' maddubs pairs still fit 16-bit lanes (2 * 2 * 2 * 31 * 128 &lt; 32768), so a block widens
    /// twice, not four times; the integer sums are exact, so the result is bitwise that of the generic loop (and of the
    /// VNNI op, which accumulates in 32 bits throughout).
    /// </summary>
    private static void Q5Column1<TPanel, TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TPanel : INibbles where TDot : IByteDot256
    {
        int recordBytes = TPanel.RecordBytes, nibbles = TPanel.NibbleOffset, fifthAt = nibbles - 32;
        Vector256<float> acc = default;
        var mask = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((byte)0x10);
        byte* record = panel;
        for (int b = 0; b < blocks; b++, record += recordBytes, x += ActivationBlockBytes, info += ActivationInfoBytes)
        {
            StreamPrefetch.Ahead(record, recordBytes);
            byte* xq = x + 2;
            var fifth = Vector256.Load(record + fifthAt).AsUInt16();
            var r0 = Vector256.Load(record + nibbles).AsUInt16();
            var r1 = Vector256.Load(record + nibbles + 32).AsUInt16();
            var r2 = Vector256.Load(record + nibbles + 64).AsUInt16();
            var r3 = Vector256.Load(record + nibbles + 96).AsUInt16();
            // Bits j and 4 + j of each fifth-bit byte belong to group j's low and high nibbles (see RepackedMatrix).
            var l0 = (r0.AsByte() & mask) | (Avx2.ShiftLeftLogical(fifth, 4).AsByte() & bit);
            var h0 = (Avx2.ShiftRightLogical(r0, 4).AsByte() & mask) | (fifth.AsByte() & bit);
            var l1 = (r1.AsByte() & mask) | (Avx2.ShiftLeftLogical(fifth, 3).AsByte() & bit);
            var h1 = (Avx2.ShiftRightLogical(r1, 4).AsByte() & mask) | (Avx2.ShiftRightLogical(fifth, 1).AsByte() & bit);
            var l2 = (r2.AsByte() & mask) | (Avx2.ShiftLeftLogical(fifth, 2).AsByte() & bit);
            var h2 = (Avx2.ShiftRightLogical(r2, 4).AsByte() & mask) | (Avx2.ShiftRightLogical(fifth, 2).AsByte() & bit);
            var l3 = (r3.AsByte() & mask) | (Avx2.ShiftLeftLogical(fifth, 1).AsByte() & bit);
            var h3 = (Avx2.ShiftRightLogical(r3, 4).AsByte() & mask) | (Avx2.ShiftRightLogical(fifth, 3).AsByte() & bit);
            var total = TPanel.Offset == 0 ? Vector256<int>.Zero : Vector256.Create(-TPanel.Offset * *(int*)(info + 4));
            var run = PairDot<TDot>(PairDot<TDot>(TDot.Open(total), l0, h0, xq, 0), l1, h1, xq, 1);
            total = TDot.Close(total, run);
            run = PairDot<TDot>(PairDot<TDot>(TDot.Open(total), l2, h2, xq, 2), l3, h3, xq, 3);
            var isum = TDot.Close(total, run);
            acc = AccumulateBlock<TPanel>(Scales256(record), record, info, isum, acc);
        }
        acc.Store(y);
    }

    /// <summary>
    /// Q4_0 / Q4_1 decode written out (the generic nibble loop cost ~70 instructions a record): the offset correction
    /// (8 * sum x) is the total the block's run closes into rather than a subtraction after it, and the prefetches
    /// address the record directly. The integer sums are exact, so the bits are those of the 4-token kernel and the
    /// scalar definition. Compute-bound (L2-resident) ~10% faster; in decode ~+3-6% t/s.
    /// </summary>
    private static void Q4Column1<TPanel, TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TPanel : INibbles where TDot : IByteDot256
    {
        int recordBytes = TPanel.RecordBytes, nibbles = TPanel.NibbleOffset;
        Vector256<float> acc = default;
        var mask = Vector256.Create((byte)0x0F);
        byte* record = panel;
        for (int b = 0; b < blocks; b++, record += recordBytes, x += ActivationBlockBytes, info += ActivationInfoBytes)
        {
            byte* ahead = record + StreamPrefetch.Distance; // one prefetch per line of the record
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + 64);
            Sse.Prefetch0(ahead + 128);
            byte* xq = x + 2;
            var r0 = Vector256.Load(record + nibbles).AsUInt16();
            var r1 = Vector256.Load(record + nibbles + 32).AsUInt16();
            var r2 = Vector256.Load(record + nibbles + 64).AsUInt16();
            var r3 = Vector256.Load(record + nibbles + 96).AsUInt16();
            var total = TPanel.Offset == 0 ? Vector256<int>.Zero : Vector256.Create(-TPanel.Offset * *(int*)(info + 4));
            var run = TDot.Open(total);
            run = TDot.Add(run, r0.AsByte() & mask, Broadcast256(xq));
            run = TDot.Add(run, Avx2.ShiftRightLogical(r0, 4).AsByte() & mask, Broadcast256(xq + 16));
            run = TDot.Add(run, r1.AsByte() & mask, Broadcast256(xq + 4));
            run = TDot.Add(run, Avx2.ShiftRightLogical(r1, 4).AsByte() & mask, Broadcast256(xq + 20));
            run = TDot.Add(run, r2.AsByte() & mask, Broadcast256(xq + 8));
            run = TDot.Add(run, Avx2.ShiftRightLogical(r2, 4).AsByte() & mask, Broadcast256(xq + 24));
            run = TDot.Add(run, r3.AsByte() & mask, Broadcast256(xq + 12));
            run = TDot.Add(run, Avx2.ShiftRightLogical(r3, 4).AsByte() & mask, Broadcast256(xq + 28));
            acc = AccumulateBlock<TPanel>(Scales256(record), record, info, TDot.Close(total, run), acc);
        }
        acc.Store(y);
    }

    /// <summary>
    /// Adds groups j (low levels) and j + 4 (high levels) of one token's activation block to a run: 2 groups of 4
    /// products per lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PairDot<TDot>(Vector256<int> run, Vector256<byte> low, Vector256<byte> high, byte* xq, int j)
        where TDot : IByteDot256 =>
        TDot.Add(TDot.Add(run, low, Broadcast256(xq + 4 * j)), high, Broadcast256(xq + 16 + 4 * j));

    /// <summary>The exact sum(u x) - Offset * sum(x) of the 8 rows with one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Finish<TPanel>(Vector256<int> isum, byte* info) where TPanel : INibbles =>
        TPanel.Offset == 0 ? isum : isum - Vector256.Create(TPanel.Offset * *(int*)(info + 4));

    private static void NibbleColumns4<TPanel, TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
        where TPanel : INibbles where TDot : IByteDot256
    {
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* record = panel;
        byte* x0 = x + 2, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        byte* i0 = info, i1 = i0 + infoStride, i2 = i1 + infoStride, i3 = i2 + infoStride;
        for (int b = 0; b < blocks; b++, record += TPanel.RecordBytes)
        {
            int xo = b * ActivationBlockBytes, io = b * ActivationInfoBytes;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Vector256<int> r0 = TDot.Open(s0), r1 = TDot.Open(s1), r2 = TDot.Open(s2), r3 = TDot.Open(s3);
            for (int j = 0; j < 4; j++)
            {
                TPanel.Decode(record, j, out var low, out var high);
                r0 = PairDot<TDot>(r0, low, high, x0 + xo, j);
                r1 = PairDot<TDot>(r1, low, high, x1 + xo, j);
                r2 = PairDot<TDot>(r2, low, high, x2 + xo, j);
                r3 = PairDot<TDot>(r3, low, high, x3 + xo, j);
                if (!TPanel.Int16Block && j < 3)
                {
                    s0 = TDot.Close(s0, r0); s1 = TDot.Close(s1, r1); s2 = TDot.Close(s2, r2); s3 = TDot.Close(s3, r3);
                    r0 = TDot.Open(s0); r1 = TDot.Open(s1); r2 = TDot.Open(s2); r3 = TDot.Open(s3);
                }
            }
            s0 = TDot.Close(s0, r0); s1 = TDot.Close(s1, r1); s2 = TDot.Close(s2, r2); s3 = TDot.Close(s3, r3);
            var scales = Scales256(record);
            acc0 = AccumulateBlock<TPanel>(scales, record, i0 + io, Finish<TPanel>(s0, i0 + io), acc0);
            acc1 = AccumulateBlock<TPanel>(scales, record, i1 + io, Finish<TPanel>(s1, i1 + io), acc1);
            acc2 = AccumulateBlock<TPanel>(scales, record, i2 + io, Finish<TPanel>(s2, i2 + io), acc2);
            acc3 = AccumulateBlock<TPanel>(scales, record, i3 + io, Finish<TPanel>(s3, i3 + io), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>Q8_0: signed levels, as |w| times x with w's sign (x is never -128, so the sign never wraps).</summary>
    private struct Q8_0Panel : IPanelAvx2
    {
        private const int RecordBytes = 272;

        /// <summary>total + group j's dot, a run of one group (a maddubs pair reaches 2 * 128 * 127: two would overflow 16 bits).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> GroupDot<TDot>(Vector256<int> total, Vector256<byte> magnitude, Vector256<sbyte> levels, byte* xq, int j)
            where TDot : IByteDot256 =>
            TDot.Close(total, TDot.Add(TDot.Open(total), magnitude, Avx2.Sign(Broadcast256(xq + 4 * j), levels)));

        /// <summary>total + the dot of group j, loaded from the record.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> Group<TDot>(Vector256<int> total, byte* record, byte* xq, int j) where TDot : IByteDot256
        {
            var w = Vector256.Load((sbyte*)(record + 16 + 32 * j));
            return GroupDot<TDot>(total, Avx2.Abs(w), w, xq, j);
        }

        /// <summary>
        /// Q8_0 decode written out: the JIT left the loops over groups and over the record's 5 prefetch lines rolled
        /// (index arithmetic per group, ~150 instructions a record). Same one-group runs into the same even/odd totals, so
        /// bitwise the scalar definition; compute-bound (L2-resident) ~25-30% faster.
        /// </summary>
        public static void Column1<TDot>(byte* panel, int blocks, byte* x, byte* info, float* y) where TDot : IByteDot256
        {
            Vector256<float> acc = default;
            byte* record = panel;
            for (int b = 0; b < blocks; b++, record += RecordBytes, x += ActivationBlockBytes, info += ActivationInfoBytes)
            {
                byte* ahead = record + StreamPrefetch.Distance; // one prefetch per line of the record
                Sse.Prefetch0(ahead);
                Sse.Prefetch0(ahead + 64);
                Sse.Prefetch0(ahead + 128);
                Sse.Prefetch0(ahead + 192);
                Sse.Prefetch0(ahead + 256);
                byte* xq = x + 2;
                var even = Group<TDot>(default, record, xq, 0);
                var odd = Group<TDot>(default, record, xq, 1);
                even = Group<TDot>(even, record, xq, 2);
                odd = Group<TDot>(odd, record, xq, 3);
                even = Group<TDot>(even, record, xq, 4);
                odd = Group<TDot>(odd, record, xq, 5);
                even = Group<TDot>(even, record, xq, 6);
                odd = Group<TDot>(odd, record, xq, 7);
                acc = Accumulate(Scales256(record), info, even + odd, acc);
            }
            acc.Store(y);
        }

        public static void Columns4<TDot>(byte* panel, int blocks, byte* x, long xStride, byte* info, long infoStride, float* y, long yStride)
            where TDot : IByteDot256
        {
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            byte* record = panel;
            byte* x0 = x + 2, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
            byte* i0 = info, i1 = i0 + infoStride, i2 = i1 + infoStride, i3 = i2 + infoStride;
            for (int b = 0; b < blocks; b++, record += RecordBytes)
            {
                int xo = b * ActivationBlockBytes, io = b * ActivationInfoBytes;
                Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int j = 0; j < 8; j++)
                {
                    var w = Vector256.Load((sbyte*)(record + 16 + 32 * j));
                    var magnitude = Avx2.Abs(w);
                    s0 = GroupDot<TDot>(s0, magnitude, w, x0 + xo, j);
                    s1 = GroupDot<TDot>(s1, magnitude, w, x1 + xo, j);
                    s2 = GroupDot<TDot>(s2, magnitude, w, x2 + xo, j);
                    s3 = GroupDot<TDot>(s3, magnitude, w, x3 + xo, j);
                }
                var scales = Scales256(record);
                acc0 = Accumulate(scales, i0 + io, s0, acc0);
                acc1 = Accumulate(scales, i1 + io, s1, acc1);
                acc2 = Accumulate(scales, i2 + io, s2, acc2);
                acc3 = Accumulate(scales, i3 + io, s3, acc3);
            }
            acc0.Store(y);
            acc1.Store(y + yStride);
            acc2.Store(y + 2 * yStride);
            acc3.Store(y + 3 * yStride);
        }
    }

    // ---------------------------------------------------------------- Vector128 (Arm, or x64 without AVX2)

    /// <summary>Per 32-bit lane: the sum of the 4 products of its signed bytes (sdot's grouping).</summary>
    internal interface IDot4
    {
        static abstract Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b);
    }

    internal struct DotProduct4 : IDot4
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b) => Dp.DotProduct(acc, a, b);
    }

    internal struct PortableDot4 : IDot4
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b)
        {
            var (a0, a1) = Vector128.Widen(a);
            var (b0, b1) = Vector128.Widen(b);
            // |products| <= 128 * 128: fit in short. Sum adjacent shorts into ints, then adjacent ints into longs.
            var p0 = (a0 * b0).AsInt32();
            var p1 = (a1 * b1).AsInt32();
            var q0 = (Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(p0, 16), 16) + Vector128.ShiftRightArithmetic(p0, 16)).AsInt64();
            var q1 = (Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(p1, 16), 16) + Vector128.ShiftRightArithmetic(p1, 16)).AsInt64();
            var r0 = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(q0, 32), 32) + Vector128.ShiftRightArithmetic(q0, 32);
            var r1 = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(q1, 32), 32) + Vector128.ShiftRightArithmetic(q1, 32);
            return acc + Vector128.Narrow(r0, r1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Scales128(byte* record, int half)
    {
        var h = Vector128.WidenLower(Vector128.Load((ushort*)record + 4 * half)).AsInt32();
        var magnitude = Vector128.ShiftLeft(h & Vector128.Create(0x7FFF), 13);
        var sign = Vector128.ShiftLeft(h & Vector128.Create(0x8000), 16);
        return (magnitude | sign).AsSingle();
    }

    private static void Tile128<TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride) where TDot : IDot4
    {
        int blocks = m.Blocks, recordBytes = m.BlockBytes;
        GgmlType type = m.Type;
        bool hasMin = RepackedMatrix.HasMin(type);
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * m.PanelStride;
            for (int c = 0; c < cols; c++)
            {
                byte* xr = x + c * xStride, ir = info + c * infoStride;
                for (int half = 0; half < 2; half++)
                {
                    var acc = Vector128<float>.Zero;
                    for (int b = 0; b < blocks; b++)
                    {
                        byte* record = panel + (long)b * recordBytes;
                        byte* xq = xr + b * ActivationBlockBytes + 2;
                        byte* xi = ir + b * ActivationInfoBytes;
                        var isum = Vector128<int>.Zero;
                        if (type == GgmlType.Q8_0)
                        {
                            for (int j = 0; j < 8; j++)
                                isum = TDot.Dot(isum, Vector128.Load((sbyte*)(record + 16 + 32 * j + 16 * half)), Vector128.Create(*(int*)(xq + 4 * j)).AsSByte());
                        }
                        else
                        {
                            bool five = type is GgmlType.Q5_0 or GgmlType.Q5_1;
                            int nibbles = RepackedMatrix.NibbleOffset(type);
                            var offset = Vector128.Create((byte)(type switch { GgmlType.Q4_0 => 8, GgmlType.Q5_0 => 16, _ => 0 }));
                            var mask = Vector128.Create((byte)0x0F);
                            var bit = Vector128.Create((byte)0x10);
                            var fifth = five ? Vector128.Load(record + RepackedMatrix.FifthBitsOffset(type) + 16 * half) : default;
                            for (int j = 0; j < 4; j++)
                            {
                                var raw = Vector128.Load(record + nibbles + 32 * j + 16 * half);
                                var low = raw & mask;
                                var high = Vector128.ShiftRightLogical(raw, 4);
                                if (five)
                                {
                                    low |= Vector128.ShiftLeft(fifth, 4 - j) & bit;
                                    high |= Vector128.ShiftRightLogical(fifth, j) & bit;
                                }
                                isum = TDot.Dot(isum, (low - offset).AsSByte(), Vector128.Create(*(int*)(xq + 4 * j)).AsSByte());
                                isum = TDot.Dot(isum, (high - offset).AsSByte(), Vector128.Create(*(int*)(xq + 16 + 4 * j)).AsSByte());
                            }
                        }
                        var dx = Vector128.Create(*(float*)xi);
                        acc = Vector128.FusedMultiplyAdd(Scales128(record, half) * dx, Vector128.ConvertToSingle(isum), acc);
                        if (hasMin) acc = Vector128.FusedMultiplyAdd(Scales128(record + 16, half) * dx, Vector128.Create((float)*(int*)(xi + 4)), acc);
                    }
                    acc.Store(y + c * yStride + p * RepackedMatrix.PanelRows + 4 * half);
                }
            }
        }
    }
}
