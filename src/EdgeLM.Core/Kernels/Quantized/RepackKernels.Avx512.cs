using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// The 512-bit prefill tile: one zmm register holds the same 32-byte group of two panels (panel p in the low 256 bits,
/// p + 1 in the high), so one broadcast activation dword meets 16 rows, the two panels' scales form one 16-lane float
/// vector, and the 16 outputs of a token are contiguous in y (rows 8p .. 8p + 15). A tile is 2 panels x 4 tokens;
/// an odd last panel, the tokens past the last multiple of 4 and decode (1 token, memory-bound) go through the
/// 256-bit kernels. Per lane it is the computation of the 256-bit tile: the same integer runs (see
/// <see cref="IByteDot256"/>: Q4_0 a block, Q5_0 two groups, Q8_0 one group, so maddubs never saturates and the
/// 16-bit runs never wrap), the same d_w * d_x product and one fused multiply-add per block in block order, hence
/// the same bits as the scalar definition.
/// <para>
/// Taken where AVX-512BW is present and AVX-VNNI is not: VNNI's 256-bit vpdpbusd does a group of 8 rows in one
/// instruction, while maddubs + madd at 512 bits need 2-3 for two panels' groups, so VNNI stays preferred. .NET 10
/// exposes no 512-bit vpdpbusd (AVX512-VNNI has no API; AvxVnniInt8.V512 is AVX10.2's signed vpdpbssd family), so
/// where both exist the 256-bit VNNI tile is the one that runs.
/// </para>
/// </summary>
public static unsafe partial class RepackKernels
{
    /// <summary>
    /// The 512-bit byte dot product of <see cref="IByteDot256"/> (Open / Add / Close with the same run lengths, so the
    /// same exact integers) and the few other 512-bit operations whose software Vector512 forms would be slow or not
    /// exact in the same way: with two implementations, the hardware one and an AVX2 emulation per 256-bit half, the
    /// whole tile body (loads, two-panel inserts, scales, fused multiply-adds, stores, tails) is tested on machines
    /// without AVX-512.
    /// </summary>
    internal interface IByteDot512
    {
        static abstract Vector512<int> Open(Vector512<int> total);
        /// <summary>The run plus, per lane, the 4 products of a's unsigned bytes with b's signed bytes (maddubs pairs, saturating).</summary>
        static abstract Vector512<int> Add(Vector512<int> run, Vector512<byte> a, Vector512<sbyte> b);
        static abstract Vector512<int> Close(Vector512<int> total, Vector512<int> run);
        /// <summary>|w| as unsigned bytes (-128 gives 128).</summary>
        static abstract Vector512<byte> Magnitude(Vector512<sbyte> w);
        /// <summary>
        /// x negated where w is negative (there is no 512-bit vpsignb): |w| * WithSignOf(x, w) = w * x, exact since
        /// |x| &lt;= 127.
        /// </summary>
        static abstract Vector512<sbyte> WithSignOf(Vector512<sbyte> x, Vector512<sbyte> w);
        /// <summary>fma(d, (float)isum, acc), rounded once per lane.</summary>
        static abstract Vector512<float> Accumulate(Vector512<float> d, Vector512<int> isum, Vector512<float> acc);
    }

    /// <summary>AVX-512BW / AVX-512F instructions.</summary>
    internal struct Avx512ByteDot : IByteDot512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Open(Vector512<int> total) => Vector512<int>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Add(Vector512<int> run, Vector512<byte> a, Vector512<sbyte> b) =>
            (run.AsInt16() + Avx512BW.MultiplyAddAdjacent(a, b)).AsInt32();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Close(Vector512<int> total, Vector512<int> run) =>
            total + Avx512BW.MultiplyAddAdjacent(run.AsInt16(), Vector512.Create((short)1));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Magnitude(Vector512<sbyte> w) => Avx512BW.Abs(w);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<sbyte> WithSignOf(Vector512<sbyte> x, Vector512<sbyte> w) =>
            Avx512BW.BlendVariable(x, Vector512<sbyte>.Zero - x, w);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Accumulate(Vector512<float> d, Vector512<int> isum, Vector512<float> acc) =>
            Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(isum), acc);
    }

    /// <summary>
    /// The same operations done per 256-bit half with AVX2 (maddubs saturation, 16-bit wrapping, blend on the sign
    /// bit, one rounding per fma): what the tests run the 512-bit tile with where there is no AVX-512.
    /// </summary>
    internal struct EmulatedByteDot512 : IByteDot512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Open(Vector512<int> total) => Vector512<int>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Add(Vector512<int> run, Vector512<byte> a, Vector512<sbyte> b) => Vector512.Create(
            (run.GetLower().AsInt16() + Avx2.MultiplyAddAdjacent(a.GetLower(), b.GetLower())).AsInt32(),
            (run.GetUpper().AsInt16() + Avx2.MultiplyAddAdjacent(a.GetUpper(), b.GetUpper())).AsInt32());

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Close(Vector512<int> total, Vector512<int> run) => Vector512.Create(
            total.GetLower() + Avx2.MultiplyAddAdjacent(run.GetLower().AsInt16(), Vector256.Create((short)1)),
            total.GetUpper() + Avx2.MultiplyAddAdjacent(run.GetUpper().AsInt16(), Vector256.Create((short)1)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Magnitude(Vector512<sbyte> w) => Vector512.Create(Avx2.Abs(w.GetLower()), Avx2.Abs(w.GetUpper()));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<sbyte> WithSignOf(Vector512<sbyte> x, Vector512<sbyte> w) => Vector512.Create(
            Avx2.BlendVariable(x.GetLower(), Vector256<sbyte>.Zero - x.GetLower(), w.GetLower()),
            Avx2.BlendVariable(x.GetUpper(), Vector256<sbyte>.Zero - x.GetUpper(), w.GetUpper()));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Accumulate(Vector512<float> d, Vector512<int> isum, Vector512<float> acc) => Vector512.Create(
            Fma.MultiplyAdd(d.GetLower(), Avx.ConvertToVector256Single(isum.GetLower()), acc.GetLower()),
            Fma.MultiplyAdd(d.GetUpper(), Avx.ConvertToVector256Single(isum.GetUpper()), acc.GetUpper()));
    }

    /// <summary>
    /// <see cref="Tile"/> with the 512-bit prefill tile on byte dot <typeparamref name="TDot"/>; the 256-bit parts run
    /// the AVX2 op (this path is taken only without AVX-VNNI). Needs AVX2 and FMA, and AVX-512BW for
    /// <see cref="Avx512ByteDot"/>.
    /// </summary>
    internal static void Tile512<TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride,
        int cols, float* y, long yStride) where TDot : IByteDot512
    {
        switch (m.Type)
        {
            case GgmlType.Q4_0: Tile512<Q4_0Panel, Nibbles512<Q4_0Nibbles>, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            case GgmlType.Q5_0: Tile512<Q5_0Panel, Nibbles512<Q5_0Nibbles>, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
            default: Tile512<Q8_0Panel, Q8_0Panel512, TDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride); break;
        }
    }

    private static void Tile512<TPanel, TPanel512, TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info,
        long infoStride, int cols, float* y, long yStride) where TPanel : IPanelAvx2 where TPanel512 : IPanelPair512 where TDot : IByteDot512
    {
        int blocks = m.Blocks;
        long panelStride = m.PanelStride;
        int pairedPanels = panelCount & ~1, tiledCols = cols & ~3;
        if (pairedPanels == 0 || tiledCols == 0)
        {
            // Decode and lone panels: the 256-bit kernels as they are (Column1 streams the panel with its prefetches).
            TileAvx2<TPanel, Avx2ByteDot>(m, panels, panelCount, x, xStride, info, infoStride, cols, y, yStride);
            return;
        }
        for (int p = 0; p < pairedPanels; p += 2)
        {
            byte* panel = panels + p * panelStride;
            float* yp = y + p * RepackedMatrix.PanelRows;
            for (int c = 0; c < tiledCols; c += 4)
                TPanel512.Columns4<TDot>(panel, panel + panelStride, blocks, x + c * xStride, xStride, info + c * infoStride, infoStride,
                    yp + c * yStride, yStride);
        }
        // The paired panels' last cols % 4 tokens and the odd panel (all its tokens): the 256-bit kernels, same bits.
        if (tiledCols < cols)
            TileAvx2<TPanel, Avx2ByteDot>(m, panels, pairedPanels, x + tiledCols * xStride, xStride, info + tiledCols * infoStride, infoStride,
                cols - tiledCols, y + tiledCols * yStride, yStride);
        if (pairedPanels < panelCount)
            TileAvx2<TPanel, Avx2ByteDot>(m, panels + pairedPanels * panelStride, panelCount - pairedPanels, x, xStride, info, infoStride,
                cols, y + pairedPanels * RepackedMatrix.PanelRows, yStride);
    }

    /// <summary>Group j (32 bytes at <paramref name="offset"/> + 32 j) of two panels' records: p low, p + 1 high.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> LoadPair(byte* recordP, byte* recordQ, int offset) =>
        Vector512.Create(Vector256.Load(recordP + offset), Vector256.Load(recordQ + offset));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Broadcast512(byte* p) => Vector512.Create(*(int*)p).AsSByte();

    /// <summary>The 16 rows' scales times 2^-112 (<see cref="Scales256"/> of each panel), exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales512(byte* recordP, byte* recordQ) => Vector512.Create(Scales256(recordP), Scales256(recordQ));

    /// <summary>acc + (d_w * d_x) * isum for 16 rows and one token, d_w * d_x rounded as in <see cref="Accumulate"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Accumulate512<TDot>(Vector512<float> scales, byte* info, Vector512<int> isum, Vector512<float> acc)
        where TDot : IByteDot512 =>
        TDot.Accumulate(scales * Vector512.Create(*(float*)info), isum, acc);

    private interface IPanelPair512
    {
        /// <summary>y[c * yStride + i] = dot(row i of the pair (panel p rows 0..7, then p + 1), token c), c &lt; 4.</summary>
        static abstract void Columns4<TDot>(byte* panelP, byte* panelQ, int blocks, byte* x, long xStride, byte* info, long infoStride,
            float* y, long yStride) where TDot : IByteDot512;
    }

    /// <summary>The 512-bit decode of a nibble format's groups (<see cref="INibbles"/> at 512 bits).</summary>
    private interface INibbleDecode512
    {
        static abstract int Offset { get; }
        static abstract int RecordBytes { get; }
        /// <summary>See <see cref="INibbles.Int16Block"/>: Q4_0's run spans a block, Q5_0's two groups.</summary>
        static abstract bool Int16Block { get; }
        /// <summary>Bytes read once per record pair before its groups (Q5_0: the fifth bits).</summary>
        static abstract Vector512<ushort> Prepare(byte* recordP, byte* recordQ);
        /// <summary>Levels u of groups j (low nibbles) and j + 4 (high nibbles) of both records.</summary>
        static abstract void Decode(byte* recordP, byte* recordQ, Vector512<ushort> prepared, int j, out Vector512<byte> low, out Vector512<byte> high);
    }

    private struct Q4_0Nibbles : INibbleDecode512
    {
        public static int Offset => 8;
        public static int RecordBytes => 144;
        public static bool Int16Block => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<ushort> Prepare(byte* recordP, byte* recordQ) => default;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* recordP, byte* recordQ, Vector512<ushort> prepared, int j, out Vector512<byte> low, out Vector512<byte> high)
        {
            var raw = LoadPair(recordP, recordQ, 16 + 32 * j);
            var mask = Vector512.Create((byte)0x0F);
            low = raw & mask;
            high = Vector512.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
        }
    }

    private struct Q5_0Nibbles : INibbleDecode512
    {
        public static int Offset => 16;
        public static int RecordBytes => 176;
        public static bool Int16Block => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<ushort> Prepare(byte* recordP, byte* recordQ) => LoadPair(recordP, recordQ, 16).AsUInt16();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Decode(byte* recordP, byte* recordQ, Vector512<ushort> fifth, int j, out Vector512<byte> low, out Vector512<byte> high)
        {
            var raw = LoadPair(recordP, recordQ, 48 + 32 * j);
            var mask = Vector512.Create((byte)0x0F);
            var bit = Vector512.Create((byte)0x10);
            // As Q5_0Panel.Decode: 16-bit shifts bring bit j (or 4 + j) of each fifth-bit byte to bit 4 of that byte.
            low = (raw & mask) | (Vector512.ShiftLeft(fifth, 4 - j).AsByte() & bit);
            high = (Vector512.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask) | (Vector512.ShiftRightLogical(fifth, j).AsByte() & bit);
        }
    }

    /// <summary>Q4_0 / Q5_0 pairs: <see cref="NibbleColumns4"/> with two panels per register.</summary>
    private struct Nibbles512<TNibbles> : IPanelPair512 where TNibbles : INibbleDecode512
    {
        public static void Columns4<TDot>(byte* panelP, byte* panelQ, int blocks, byte* x, long xStride, byte* info, long infoStride,
            float* y, long yStride) where TDot : IByteDot512
        {
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            byte* recordP = panelP, recordQ = panelQ;
            byte* x0 = x + 2, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
            byte* i0 = info, i1 = i0 + infoStride, i2 = i1 + infoStride, i3 = i2 + infoStride;
            for (int b = 0; b < blocks; b++, recordP += TNibbles.RecordBytes, recordQ += TNibbles.RecordBytes)
            {
                int xo = b * ActivationBlockBytes, io = b * ActivationInfoBytes;
                var prepared = TNibbles.Prepare(recordP, recordQ);
                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
                Vector512<int> r0 = TDot.Open(s0), r1 = TDot.Open(s1), r2 = TDot.Open(s2), r3 = TDot.Open(s3);
                for (int j = 0; j < 4; j++)
                {
                    TNibbles.Decode(recordP, recordQ, prepared, j, out var low, out var high);
                    r0 = PairDot512<TDot>(r0, low, high, x0 + xo, j);
                    r1 = PairDot512<TDot>(r1, low, high, x1 + xo, j);
                    r2 = PairDot512<TDot>(r2, low, high, x2 + xo, j);
                    r3 = PairDot512<TDot>(r3, low, high, x3 + xo, j);
                    if (!TNibbles.Int16Block && j < 3)
                    {
                        s0 = TDot.Close(s0, r0); s1 = TDot.Close(s1, r1); s2 = TDot.Close(s2, r2); s3 = TDot.Close(s3, r3);
                        r0 = TDot.Open(s0); r1 = TDot.Open(s1); r2 = TDot.Open(s2); r3 = TDot.Open(s3);
                    }
                }
                s0 = TDot.Close(s0, r0); s1 = TDot.Close(s1, r1); s2 = TDot.Close(s2, r2); s3 = TDot.Close(s3, r3);
                var scales = Scales512(recordP, recordQ);
                acc0 = Accumulate512<TDot>(scales, i0 + io, Finish512<TNibbles>(s0, i0 + io), acc0);
                acc1 = Accumulate512<TDot>(scales, i1 + io, Finish512<TNibbles>(s1, i1 + io), acc1);
                acc2 = Accumulate512<TDot>(scales, i2 + io, Finish512<TNibbles>(s2, i2 + io), acc2);
                acc3 = Accumulate512<TDot>(scales, i3 + io, Finish512<TNibbles>(s3, i3 + io), acc3);
            }
            acc0.Store(y);
            acc1.Store(y + yStride);
            acc2.Store(y + 2 * yStride);
            acc3.Store(y + 3 * yStride);
        }
    }

    /// <summary>Groups j (low levels) and j + 4 (high levels) of one token's activation block added to a run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairDot512<TDot>(Vector512<int> run, Vector512<byte> low, Vector512<byte> high, byte* xq, int j)
        where TDot : IByteDot512 =>
        TDot.Add(TDot.Add(run, low, Broadcast512(xq + 4 * j)), high, Broadcast512(xq + 16 + 4 * j));

    /// <summary>The exact sum(u x) - Offset * sum(x) of the 16 rows with one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Finish512<TNibbles>(Vector512<int> isum, byte* info) where TNibbles : INibbleDecode512 =>
        isum - Vector512.Create(TNibbles.Offset * *(int*)(info + 4));

    /// <summary>Q8_0 pairs: <see cref="Q8_0Panel.Columns4"/> with two panels per register, one-group runs.</summary>
    private struct Q8_0Panel512 : IPanelPair512
    {
        private const int RecordBytes = 272;

        public static void Columns4<TDot>(byte* panelP, byte* panelQ, int blocks, byte* x, long xStride, byte* info, long infoStride,
            float* y, long yStride) where TDot : IByteDot512
        {
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            byte* recordP = panelP, recordQ = panelQ;
            byte* x0 = x + 2, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
            byte* i0 = info, i1 = i0 + infoStride, i2 = i1 + infoStride, i3 = i2 + infoStride;
            for (int b = 0; b < blocks; b++, recordP += RecordBytes, recordQ += RecordBytes)
            {
                int xo = b * ActivationBlockBytes, io = b * ActivationInfoBytes;
                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int j = 0; j < 8; j++)
                {
                    var w = LoadPair(recordP, recordQ, 16 + 32 * j).AsSByte();
                    var magnitude = TDot.Magnitude(w);
                    s0 = GroupDot<TDot>(s0, magnitude, w, x0 + xo + 4 * j);
                    s1 = GroupDot<TDot>(s1, magnitude, w, x1 + xo + 4 * j);
                    s2 = GroupDot<TDot>(s2, magnitude, w, x2 + xo + 4 * j);
                    s3 = GroupDot<TDot>(s3, magnitude, w, x3 + xo + 4 * j);
                }
                var scales = Scales512(recordP, recordQ);
                acc0 = Accumulate512<TDot>(scales, i0 + io, s0, acc0);
                acc1 = Accumulate512<TDot>(scales, i1 + io, s1, acc1);
                acc2 = Accumulate512<TDot>(scales, i2 + io, s2, acc2);
                acc3 = Accumulate512<TDot>(scales, i3 + io, s3, acc3);
            }
            acc0.Store(y);
            acc1.Store(y + yStride);
            acc2.Store(y + 2 * yStride);
            acc3.Store(y + 3 * yStride);
        }

        /// <summary>total + one group's dot, a run of its own (a maddubs pair reaches 2 * 128 * 127: two would overflow 16 bits).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<int> GroupDot<TDot>(Vector512<int> total, Vector512<byte> magnitude, Vector512<sbyte> levels, byte* xGroup)
            where TDot : IByteDot512 =>
            TDot.Close(total, TDot.Add(TDot.Open(total), magnitude, TDot.WithSignOf(Broadcast512(xGroup), levels)));
    }
}
