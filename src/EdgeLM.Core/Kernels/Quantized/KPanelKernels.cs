using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q4_K, Q5_K and Q6_K weights in <see cref="RepackedMatrix"/> panels of 8 rows against Q8_K activations (ggml-cpu's
/// block_q4_Kx8 / block_q6_Kx8 idea, our own layout). One record per 256-value block column of a panel; every quant
/// group is 32 bytes holding 4 consecutive values of each of the 8 rows (row i at bytes 4i..4i+3), so a 256-bit
/// register carries one 4-value slice of 8 rows, the activation bytes are broadcast and the 8 integer sums land in
/// the 8 lanes: one lane per output row, no horizontal sums. Scales (and Q4_K / Q5_K mins) are unpacked at repack time.
/// <para>Q4_K record (<see cref="Q4KRecordBytes"/>): d halves of rows 0..7 at 0, dmin halves at 16; byte 32 + 8j + i =
/// 6-bit scale of sub-block j (values 32j..32j+31) of row i, byte 96 + 8j + i = its min; quant group (c, g) at
/// 160 + 32(8c + g), row i = the file's qs[32c + 4g..+3] (low nibbles: values 64c + 4g.., high: 64c + 32 + 4g..).</para>
/// <para>Q5_K record (<see cref="Q5KRecordBytes"/>): bytes 0..159 as Q4_K's (d, dmin, scales, mins), then per chunk c
/// (sub-blocks 2c and 2c + 1, values 64c..) at 160 + 320c, in the order the decode kernel streams them: two fifth-bit
/// vectors (groups 4v..4v + 3 at +32v) and the 8 quant groups g at +64 + 32g, row i = the file's qs[32c + 4g..+3] as in
/// Q4_K. Byte 4i + q of fifth-bit vector v has bit t = fifth bit of value 64c + 4g + q (g = 4v + t; sub-block 2c, the
/// file's qh[4g + q] bit 2c) and bit 4 + t = that of value 64c + 32 + 4g + q (sub-block 2c + 1, qh bit 2c + 1), as the
/// Q5_0 panels arrange theirs: one 16-bit shift by a constant of the group (left by 4 - t, or right by t) and a mask
/// move a group's bits to 0x10.</para>
/// <para>Q6_K record (<see cref="Q6KRecordBytes"/>, the file's size): d halves at 0; byte 16 + 16p + 2i + t = signed
/// scale of 16-value group 2p + t of row i; then per half h (values 128h..), at 144 + 768h: nibble groups (c, g) for
/// c = 2h, 2h + 1 at +256(c - 2h) + 32g, row i = the file's ql[32c + 4g..+3], and high-bit groups (h, g) at +512 + 32g,
/// row i = the file's qh[32h + 4g..+3]. Sub-block j =
/// 4h + t (values 32j..) takes nibbles of group c = 2h + (t &amp; 1) (high nibbles when t &gt;= 2) and bits 2t..2t+1.</para>
/// <para>Definition of one output, the same for every path and tile, so decode and prefill give the same bits: per
/// block, the exact integer sum isum = sum over sub-blocks (or 16-value groups) of scale * (levels . q8) (Q6_K: with
/// signed levels, computed as unsigned ones minus 32 * sum(scale * bsum)) and, for Q4_K and Q5_K, msum = sum(min_j *
/// (bsum_2j + bsum_2j+1)); then acc = fma(d * yd, isum, acc), and for Q4_K and Q5_K acc = fma(-(dmin * yd), msum, acc),
/// in block order.
/// <see cref="ReferenceDot"/> is that definition on the file's layout.</para>
/// </summary>
public static unsafe class KPanelKernels
{
    public const int Q4KRecordBytes = 32 + 64 + 64 + 1024;
    public const int Q5KRecordBytes = 32 + 64 + 64 + 256 + 1024;
    public const int Q6KRecordBytes = 16 + 128 + 1024 + 512;
    private const int QK = KQuant.QK;
    private const int Rows = RepackedMatrix.PanelRows;

    // Q5_K shares Q4_K's d, dmin, scale and min offsets: the min and scale code below serves both.
    private const int Q4Scales = 32, Q4Mins = 96, Q4Quants = 160;
    private const int Q5Chunks = 160, Q5ChunkBytes = 64 + 256;

    /// <summary>Q5_K: the fifth-bit vector of group g of chunk c (shared by groups 4v..4v + 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q5Fifth(int c, int g) => Q5Chunks + Q5ChunkBytes * c + 32 * (g >> 2);

    /// <summary>Q5_K: quant group g of chunk c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q5Quant(int c, int g) => Q5Chunks + Q5ChunkBytes * c + 64 + 32 * g;
    private const int Q6Scales = 16, Q6Quants = 144;

    /// <summary>Q6_K: each half h's two nibble groups and its high bits lie together, in the order the kernels read them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q6Nibbles(int c) => Q6Quants + 768 * (c >> 1) + 256 * (c & 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q6High(int h) => Q6Quants + 768 * h + 512;

    // ---------------------------------------------------------------- packing

    /// <summary>Packs block column <paramref name="b"/> of the 8 file rows at <paramref name="rows"/>; false if a scale is not finite.</summary>
    internal static bool PackRecord(GgmlType type, byte* rows, long rowStride, int b, byte* record)
    {
        int nonFinite = 0;
        for (int i = 0; i < Rows; i++)
        {
            if (type is GgmlType.Q4_K or GgmlType.Q5_K)
            {
                bool q5 = type == GgmlType.Q5_K;
                byte* src = rows + i * rowStride + (long)b * (q5 ? 176 : 144);
                ushort d = *(ushort*)src, dmin = *(ushort*)(src + 2);
                nonFinite |= (d & 0x7C00) == 0x7C00 || (dmin & 0x7C00) == 0x7C00 ? 1 : 0;
                *(ushort*)(record + 2 * i) = d;
                *(ushort*)(record + 16 + 2 * i) = dmin;
                KQuant.UnpackScalesK4(src + 4, out uint s0, out uint s1, out uint m0, out uint m1);
                ulong scales = s0 | (ulong)s1 << 32, mins = m0 | (ulong)m1 << 32;
                for (int j = 0; j < 8; j++)
                {
                    record[Q4Scales + 8 * j + i] = (byte)(scales >> (8 * j));
                    record[Q4Mins + 8 * j + i] = (byte)(mins >> (8 * j));
                }
                byte* qs = src + (q5 ? 48 : 16);
                for (int c = 0; c < 4; c++)
                    for (int g = 0; g < 8; g++)
                        *(uint*)(record + (q5 ? Q5Quant(c, g) : Q4Quants + 32 * (8 * c + g)) + 4 * i) = *(uint*)(qs + 32 * c + 4 * g);
                if (!q5) continue;
                byte* qh = src + 16;
                for (int c = 0; c < 4; c++)
                    for (int v = 0; v < 2; v++)
                        for (int q = 0; q < 4; q++)
                        {
                            int bits = 0;
                            for (int t = 0; t < 4; t++)
                            {
                                int h = qh[4 * (4 * v + t) + q];
                                bits |= (h >> (2 * c) & 1) << t | (h >> (2 * c + 1) & 1) << (4 + t);
                            }
                            record[Q5Fifth(c, 4 * v) + 4 * i + q] = (byte)bits;
                        }
            }
            else
            {
                byte* src = rows + i * rowStride + (long)b * 210;
                ushort d = *(ushort*)(src + 208);
                nonFinite |= (d & 0x7C00) == 0x7C00 ? 1 : 0;
                *(ushort*)(record + 2 * i) = d;
                for (int p = 0; p < 8; p++)
                {
                    record[Q6Scales + 16 * p + 2 * i] = src[192 + 2 * p];
                    record[Q6Scales + 16 * p + 2 * i + 1] = src[192 + 2 * p + 1];
                }
                for (int c = 0; c < 4; c++)
                    for (int g = 0; g < 8; g++)
                        *(uint*)(record + Q6Nibbles(c) + 32 * g + 4 * i) = *(uint*)(src + 32 * c + 4 * g);
                for (int h = 0; h < 2; h++)
                    for (int g = 0; g < 8; g++)
                        *(uint*)(record + Q6High(h) + 32 * g + 4 * i) = *(uint*)(src + 128 + 32 * h + 4 * g);
            }
        }
        return nonFinite == 0;
    }

    /// <summary>Unsigned level (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63) of value e of row i in a record: the scalar view of the layout.</summary>
    internal static int Level(GgmlType type, byte* record, int i, int e)
    {
        int j = e >> 5, g = (e & 31) >> 2, q = e & 3;
        if (type is GgmlType.Q4_K or GgmlType.Q5_K)
        {
            bool q5 = type == GgmlType.Q5_K;
            int c = j >> 1;
            byte packed = record[(q5 ? Q5Quant(c, g) : Q4Quants + 32 * (8 * c + g)) + 4 * i + q];
            int nibble = (j & 1) != 0 ? packed >> 4 : packed & 0x0F;
            if (!q5) return nibble;
            int fifth = record[Q5Fifth(c, g) + 4 * i + q] >> (4 * (j & 1) + (g & 3)) & 1;
            return nibble | fifth << 4;
        }
        int h = j >> 2, t = j & 3;
        byte nibbles = record[Q6Nibbles(2 * h + (t & 1)) + 32 * g + 4 * i + q];
        int high = record[Q6High(h) + 32 * g + 4 * i + q] >> (2 * t) & 3;
        return (t >= 2 ? nibbles >> 4 : nibbles & 0x0F) | high << 4;
    }

    /// <summary>Q6_K signed scale of 16-value group <paramref name="group"/> of row i.</summary>
    private static int Q6Scale(byte* record, int i, int group) => (sbyte)record[Q6Scales + 16 * (group >> 1) + 2 * i + (group & 1)];

    /// <summary>Row i of a record as floats, bitwise as Dequantize.Row does it on the file's block.</summary>
    internal static void DequantizeRecordRow(GgmlType type, byte* record, int i, float* dst)
    {
        float d = HalfPrecision.FromF16(*(ushort*)(record + 2 * i));
        if (type is GgmlType.Q4_K or GgmlType.Q5_K)
        {
            float min = HalfPrecision.FromF16(*(ushort*)(record + 16 + 2 * i));
            for (int j = 0; j < 8; j++)
            {
                float d1 = d * record[Q4Scales + 8 * j + i], m1 = min * record[Q4Mins + 8 * j + i];
                for (int l = 0; l < 32; l++) dst[32 * j + l] = d1 * Level(type, record, i, 32 * j + l) - m1;
            }
        }
        else
        {
            for (int e = 0; e < QK; e++) dst[e] = d * Q6Scale(record, i, e >> 4) * (Level(type, record, i, e) - 32);
        }
    }

    // ---------------------------------------------------------------- reference and scalar

    /// <summary>The class's definition on the file layout (weight row as in GGUF, activation as block_q8_K): the tests' reference.</summary>
    internal static float ReferenceDot(GgmlType type, byte* row, byte* xq, int k)
    {
        return type switch
        {
            GgmlType.Q4_K => ReferenceDot<Q4_KFormat>(row, xq, k),
            GgmlType.Q5_K => ReferenceDot<Q5_KFormat>(row, xq, k),
            GgmlType.Q6_K => ReferenceDot<Q6_KFormat>(row, xq, k),
            _ => throw new ArgumentException($"{type} has no k-quant panel layout", nameof(type)),
        };
    }

    private static float ReferenceDot<TFormat>(byte* row, byte* xq, int k) where TFormat : unmanaged, IKQuantFormat
    {
        sbyte* levels = stackalloc sbyte[QK];
        int* scales = stackalloc int[16];
        int* mins = stackalloc int[16];
        float acc = 0;
        for (int b = 0; b < k / QK; b++, row += TFormat.BlockBytes, xq += KQuant.Q8BlockBytes)
        {
            TFormat.ReferenceBlock(row, levels, scales, mins);
            sbyte* q8 = (sbyte*)(xq + KQuant.Q8Quants);
            short* bsums = (short*)(xq + KQuant.Q8Bsums);
            int isum = 0, msum = 0;
            for (int g = 0; g < 16; g++)
            {
                int dot = 0;
                for (int l = 16 * g; l < 16 * g + 16; l++) dot += levels[l] * q8[l];
                isum += scales[g] * dot;
                msum += mins[g] * bsums[g];
            }
            float yd = *(float*)xq;
            acc = MathF.FusedMultiplyAdd(KQuant.Half(row + TFormat.DeltaOffset) * yd, isum, acc);
            if (TFormat.HasMin) acc = MathF.FusedMultiplyAdd(-(KQuant.Half(row + TFormat.DeltaOffset + 2) * yd), msum, acc);
        }
        return acc;
    }

    /// <summary>
    /// y[c * yStride + 8p + i] = dot(row i of panel p, activation row c) for p &lt; panelCount, c &lt; cols. Panel p
    /// starts at panels + p * m.PanelStride; activation row c (block_q8_K) at x + c * xStride.
    /// </summary>
    public static void Tile(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
    {
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            if (AvxVnni.IsSupported) TileAvx2<VnniWordDot>(m, panels, panelCount, x, xStride, cols, y, yStride);
            else TileAvx2<Avx2WordDot>(m, panels, panelCount, x, xStride, cols, y, yStride);
        }
        else if (Vector128.IsHardwareAccelerated) Tile128(m, panels, panelCount, x, xStride, cols, y, yStride);
        else TileScalar(m, panels, panelCount, x, xStride, cols, y, yStride);
    }

    internal static void TileScalar(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
    {
        GgmlType type = m.Type;
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * m.PanelStride;
            for (int c = 0; c < cols; c++)
                for (int i = 0; i < Rows; i++)
                {
                    float acc = 0;
                    for (int b = 0; b < m.Blocks; b++)
                    {
                        byte* record = panel + (long)b * m.BlockBytes;
                        byte* xb = x + c * xStride + (long)b * KQuant.Q8BlockBytes;
                        sbyte* q8 = (sbyte*)(xb + KQuant.Q8Quants);
                        short* bsums = (short*)(xb + KQuant.Q8Bsums);
                        int isum = 0, msum = 0;
                        float yd = *(float*)xb;
                        float d = HalfPrecision.FromF16(*(ushort*)(record + 2 * i)) * yd;
                        if (type is GgmlType.Q4_K or GgmlType.Q5_K)
                        {
                            for (int j = 0; j < 8; j++)
                            {
                                int dot = 0;
                                for (int e = 32 * j; e < 32 * j + 32; e++) dot += Level(type, record, i, e) * q8[e];
                                isum += record[Q4Scales + 8 * j + i] * dot;
                                msum += record[Q4Mins + 8 * j + i] * (bsums[2 * j] + bsums[2 * j + 1]);
                            }
                            acc = MathF.FusedMultiplyAdd(d, isum, acc);
                            acc = MathF.FusedMultiplyAdd(-(HalfPrecision.FromF16(*(ushort*)(record + 16 + 2 * i)) * yd), msum, acc);
                        }
                        else
                        {
                            int offset = 0;
                            for (int g = 0; g < 16; g++)
                            {
                                int dot = 0;
                                for (int e = 16 * g; e < 16 * g + 16; e++) dot += Level(type, record, i, e) * q8[e];
                                int scale = Q6Scale(record, i, g);
                                isum += scale * dot;
                                offset += scale * bsums[g];
                            }
                            acc = MathF.FusedMultiplyAdd(d, isum - 32 * offset, acc);
                        }
                    }
                    y[c * yStride + p * Rows + i] = acc;
                }
        }
    }

    // ---------------------------------------------------------------- AVX2 and AVX-VNNI

    /// <summary>
    /// acc + per 32-bit lane a[2i] * b[2i] + a[2i + 1] * b[2i + 1] of 16-bit lanes: the scale multiply-add of the
    /// sub-block sums. The panel kernels have one body for both ops and differ only in this type parameter.
    /// <para>
    /// Both ops give the same bits whatever the operands: vpdpwssd adds the two exact products to the lane modulo 2^32,
    /// and pmaddwd then vpaddd do the same (pmaddwd's one overflow, (-32768)^2 * 2 = 2^31, wraps to -2^31, which is the
    /// same value modulo 2^32). The 16-bit sums fed to it are exact because every maddubs pair and 16-bit run stays
    /// below 2^15 (see <see cref="SubBlock{TPanel,TCols,TSub,TDot}"/>; activations are Q8_K levels, |x| &lt;= 127).
    /// </para>
    /// </summary>
    internal interface IWordDot256
    {
        static abstract Vector256<int> Add(Vector256<int> acc, Vector256<short> a, Vector256<short> b);
    }

    internal struct Avx2WordDot : IWordDot256
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Add(Vector256<int> acc, Vector256<short> a, Vector256<short> b) => acc + Avx2.MultiplyAddAdjacent(a, b);
    }

    /// <summary>vpdpwssd: the multiply-add and the accumulation in one instruction.</summary>
    internal struct VnniWordDot : IWordDot256
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Add(Vector256<int> acc, Vector256<short> a, Vector256<short> b) => AvxVnni.MultiplyWideningAndAdd(acc, a, b);
    }

    /// <summary>The AVX2 tile with the scale multiply-add <typeparamref name="TDot"/>: the same bits whichever op runs.</summary>
    internal static void TileAvx2<TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
        where TDot : IWordDot256
    {
        switch (m.Type)
        {
            case GgmlType.Q4_K: TileAvx2<Q4Panel, TDot>(m, panels, panelCount, x, xStride, cols, y, yStride); break;
            case GgmlType.Q5_K: TileAvx2<Q5Panel, TDot>(m, panels, panelCount, x, xStride, cols, y, yStride); break;
            default: TileAvx2<Q6Panel, TDot>(m, panels, panelCount, x, xStride, cols, y, yStride); break;
        }
    }

    private static void TileAvx2<TPanel, TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
        where TPanel : IKPanel where TDot : IWordDot256
    {
        int blocks = m.Blocks;
        long panelStride = m.PanelStride;
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * panelStride;
            float* yp = y + p * Rows;
            int c = 0;
            for (; c + 4 <= cols; c += 4)
                PanelAvx2<TPanel, FourColumns, TDot>(panel, blocks, x + c * xStride, xStride, yp + c * yStride, yStride);
            for (; c < cols; c++)
            {
                if (typeof(TPanel) == typeof(Q4Panel)) Q4KColumn1<TDot>(panel, blocks, x + c * xStride, yp + c * yStride);
                else if (typeof(TPanel) == typeof(Q5Panel)) Q5KColumn1<TDot>(panel, blocks, x + c * xStride, yp + c * yStride);
                else Q6KColumn1<TDot>(panel, blocks, x + c * xStride, yp + c * yStride);
            }
        }
    }

    /// <summary>
    /// Records ahead that the decode kernels prefetch: a record is read in several passes out of address order, which
    /// the hardware prefetchers follow poorly (decode measured ~1.6x slower without it). Each pass of the record
    /// requests its share of the lines of the record this far ahead, so the prefetches need no loop of their own.
    /// </summary>
    private const int DecodePrefetchRecords = 2;

    /// <summary>Prefetches lines [first, first + count) of the record <see cref="DecodePrefetchRecords"/> ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchLines(byte* record, int recordBytes, int first, int count)
    {
        byte* ahead = record + DecodePrefetchRecords * recordBytes + 64 * first;
        for (int line = 0; line < count; line++) Sse.Prefetch0(ahead + 64 * line);
    }

    /// <summary>
    /// Q4_K decode (one activation row) in one method with every group written out: the generic panel kernel pays a
    /// call and by-reference sums per sub-block pair, and a loop over the groups costs as much as their arithmetic.
    /// Each 32-byte quant load serves both of its sub-blocks (low and high nibbles); a sub-block's 8 groups sum in 16
    /// bits (8 * 2 * 15 * 128 &lt; 2^15). The integer sums are exact and <see cref="Finish{TPanel}"/> is shared, so the
    /// output is bitwise that of the generic kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4KColumn1<TDot>(byte* panel, int blocks, byte* x, float* y) where TDot : IWordDot256
    {
        Vector256<float> acc = default;
        byte* record = panel;
        for (int b = 0; b < blocks; b++, record += Q4KRecordBytes, x += KQuant.Q8BlockBytes)
        {
            Vector256<int> isum = default;
            for (int c = 0; c < 4; c++)
            {
                PrefetchLines(record, Q4KRecordBytes, 5 * c, 5); // 20 lines: a record spans at most 19 + 1
                byte* quants = record + Q4Quants + 256 * c;
                byte* q = x + KQuant.Q8Quants + 64 * c;
                Vector256<short> low = default, high = default;
                Q4KGroup(quants, q, 0, ref low, ref high);
                Q4KGroup(quants, q, 1, ref low, ref high);
                Q4KGroup(quants, q, 2, ref low, ref high);
                Q4KGroup(quants, q, 3, ref low, ref high);
                Q4KGroup(quants, q, 4, ref low, ref high);
                Q4KGroup(quants, q, 5, ref low, ref high);
                Q4KGroup(quants, q, 6, ref low, ref high);
                Q4KGroup(quants, q, 7, ref low, ref high);
                isum = TDot.Add(TDot.Add(isum, low, DupUnsigned(record + Q4Scales + 16 * c)), high, DupUnsigned(record + Q4Scales + 16 * c + 8));
            }
            acc = Finish<Q4Panel>(acc, isum, Halfs8(record), Halfs8(record + 16), record, x);
        }
        acc.Store(y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KGroup(byte* quants, byte* q, int g, ref Vector256<short> low, ref Vector256<short> high)
    {
        var mask = Vector256.Create((byte)0x0F);
        var raw = Vector256.Load(quants + 32 * g);
        low += Avx2.MultiplyAddAdjacent(raw & mask, Broadcast4(q + 4 * g));
        high += Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask, Broadcast4(q + 32 + 4 * g));
    }

    /// <summary>
    /// Q5_K decode (one activation row), written out like <see cref="Q4KColumn1{TDot}"/>, reading each chunk's bytes in
    /// address order: one fifth-bit load serves a run of 4 groups of both sub-blocks. With 5-bit levels only 4 groups fit
    /// a 16-bit run (4 * 2 * 31 * 128 = 31744 &lt; 2^15, activations down to -128; 8 would not), so each sub-block takes
    /// two scale multiply-adds. Exact integers, so bitwise the generic kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q5KColumn1<TDot>(byte* panel, int blocks, byte* x, float* y) where TDot : IWordDot256
    {
        Vector256<float> acc = default;
        byte* record = panel;
        for (int b = 0; b < blocks; b++, record += Q5KRecordBytes, x += KQuant.Q8BlockBytes)
        {
            Vector256<int> isum = default;
            for (int c = 0; c < 4; c++)
            {
                PrefetchLines(record, Q5KRecordBytes, 6 * c, 6); // 24 lines: a record spans at most 23 + 1
                byte* chunk = record + Q5Chunks + Q5ChunkBytes * c;
                byte* q = x + KQuant.Q8Quants + 64 * c;
                var lowScale = DupUnsigned(record + Q4Scales + 16 * c);
                var highScale = DupUnsigned(record + Q4Scales + 16 * c + 8);
                var bits = Vector256.Load(chunk).AsUInt16();
                Vector256<short> low = default, high = default;
                Q5KGroup(chunk + 64, bits, q, 0, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 1, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 2, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 3, ref low, ref high);
                isum = TDot.Add(TDot.Add(isum, low, lowScale), high, highScale);
                bits = Vector256.Load(chunk + 32).AsUInt16();
                low = default;
                high = default;
                Q5KGroup(chunk + 64, bits, q, 4, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 5, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 6, ref low, ref high);
                Q5KGroup(chunk + 64, bits, q, 7, ref low, ref high);
                isum = TDot.Add(TDot.Add(isum, low, lowScale), high, highScale);
            }
            acc = Finish<Q5Panel>(acc, isum, Halfs8(record), Halfs8(record + 16), record, x);
        }
        acc.Store(y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5KGroup(byte* quants, Vector256<ushort> bits, byte* q, int g, ref Vector256<short> low, ref Vector256<short> high)
    {
        var raw = Vector256.Load(quants + 32 * g);
        low += Avx2.MultiplyAddAdjacent(Q5LowLevels(raw, bits, g), Broadcast4(q + 4 * g));
        high += Avx2.MultiplyAddAdjacent(Q5HighLevels(raw, bits, g), Broadcast4(q + 32 + 4 * g));
    }

    /// <summary>Q5_K levels of group g of a chunk's first sub-block: low nibbles, fifth bit t = g &amp; 3 moved up to 0x10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q5LowLevels(Vector256<byte> raw, Vector256<ushort> bits, int g) =>
        (raw & Vector256.Create((byte)0x0F)) | (Vector256.ShiftLeft(bits, 4 - (g & 3)).AsByte() & Vector256.Create((byte)0x10));

    /// <summary>Q5_K levels of group g of a chunk's second sub-block: high nibbles, fifth bit 4 + (g &amp; 3) moved down to 0x10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q5HighLevels(Vector256<byte> raw, Vector256<ushort> bits, int g)
    {
        var fifth = (g & 3) == 0 ? bits : Vector256.ShiftRightLogical(bits, g & 3);
        return (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F)) | (fifth.AsByte() & Vector256.Create((byte)0x10));
    }

    /// <summary>
    /// Q6_K decode (one activation row), written out like <see cref="Q4KColumn1{TDot}"/>: per half, each group's two nibble
    /// loads and one high-bit load serve all four sub-blocks. Pairs of groups sum in 16 bits (2 * 2 * 63 * 128 &lt; 2^15)
    /// before their 16-value group's scale; exact integers, so bitwise the generic kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6KColumn1<TDot>(byte* panel, int blocks, byte* x, float* y) where TDot : IWordDot256
    {
        Vector256<float> acc = default;
        byte* record = panel;
        for (int b = 0; b < blocks; b++, record += Q6KRecordBytes, x += KQuant.Q8BlockBytes)
        {
            Vector256<int> isum = default;
            for (int part = 0; part < 4; part++)
            {
                PrefetchLines(record, Q6KRecordBytes, 7 * part, 7); // 28 lines: a record spans at most 27 + 1
                // Half h of the block (values 128h..), and its 16-value groups half16 of every sub-block.
                int h = part >> 1, half16 = part & 1;
                byte* n0 = record + Q6Nibbles(2 * h) + 128 * half16, n1 = n0 + 256, qh = record + Q6High(h) + 128 * half16;
                byte* q = x + KQuant.Q8Quants + 128 * h + 16 * half16;
                byte* scales = record + Q6Scales + 64 * h;
                isum = Q6KGroupPair<TDot>(Q6KGroupPair<TDot>(isum, n0, n1, qh, q, 0, scales, half16), n0, n1, qh, q, 2, scales, half16);
            }
            acc = Finish<Q6Panel>(acc, isum, Halfs8(record), default, record, x);
        }
        acc.Store(y);
    }

    /// <summary>Groups g and g + 1 (of this 16-value quarter) of the four sub-blocks of a half, scaled.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6KGroupPair<TDot>(Vector256<int> isum, byte* n0, byte* n1, byte* qh, byte* q, int g, byte* scales, int half16)
        where TDot : IWordDot256
    {
        Q6KGroup(n0, n1, qh, q, g, out var a0, out var a1, out var a2, out var a3);
        Q6KGroup(n0, n1, qh, q, g + 1, out var b0, out var b1, out var b2, out var b3);
        isum = TDot.Add(isum, a0 + b0, DupSigned(scales, half16));
        isum = TDot.Add(isum, a1 + b1, DupSigned(scales + 16, half16));
        isum = TDot.Add(isum, a2 + b2, DupSigned(scales + 32, half16));
        return TDot.Add(isum, a3 + b3, DupSigned(scales + 48, half16));
    }

    /// <summary>Group g's products with the four sub-blocks t (levels: nibble group t &amp; 1, high nibbles when t &gt;= 2, bits 2t..2t+1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KGroup(byte* n0, byte* n1, byte* qh, byte* q, int g,
        out Vector256<short> p0, out Vector256<short> p1, out Vector256<short> p2, out Vector256<short> p3)
    {
        var mask = Vector256.Create((byte)0x0F);
        var highMask = Vector256.Create((byte)0x30);
        var lo = Vector256.Load(n0 + 32 * g).AsUInt16();
        var hi = Vector256.Load(n1 + 32 * g).AsUInt16();
        var bits = Vector256.Load(qh + 32 * g).AsUInt16();
        var l0 = (lo.AsByte() & mask) | (Avx2.ShiftLeftLogical(bits, 4).AsByte() & highMask);
        var l1 = (hi.AsByte() & mask) | (Avx2.ShiftLeftLogical(bits, 2).AsByte() & highMask);
        var l2 = (Avx2.ShiftRightLogical(lo, 4).AsByte() & mask) | (bits.AsByte() & highMask);
        var l3 = (Avx2.ShiftRightLogical(hi, 4).AsByte() & mask) | (Avx2.ShiftRightLogical(bits, 2).AsByte() & highMask);
        p0 = Avx2.MultiplyAddAdjacent(l0, Broadcast4(q + 4 * g));
        p1 = Avx2.MultiplyAddAdjacent(l1, Broadcast4(q + 32 + 4 * g));
        p2 = Avx2.MultiplyAddAdjacent(l2, Broadcast4(q + 64 + 4 * g));
        p3 = Avx2.MultiplyAddAdjacent(l3, Broadcast4(q + 96 + 4 * g));
    }

    /// <summary>One k-quant panel format as the AVX2 kernel sees it.</summary>
    private interface IKPanel
    {
        static abstract int RecordBytes { get; }
        static abstract bool HasMin { get; }
        /// <summary>Sub-blocks per outer-loop chunk: those whose level extraction differs only in constants.</summary>
        static abstract int SubBlocksPerChunk { get; }
        /// <summary>Groups of a sub-block summed in 16 bits before its scale multiply-add (min-type formats; see SubBlock).</summary>
        static abstract int GroupsPerRun { get; }
        /// <summary>Unsigned levels of group g (values 4g..4g+3 of each row) of sub-block chunk * SubBlocksPerChunk + TSub.T.</summary>
        static abstract Vector256<byte> Levels<TSub>(byte* record, int chunk, int g) where TSub : ISub;
    }

    /// <summary>
    /// The position of a sub-block inside its chunk as a type, so that each position's code is compiled on its own with
    /// its shifts as constants (one method holding all of them exceeds the JIT's inlining budget).
    /// </summary>
    private interface ISub
    {
        static abstract int T { get; }
        /// <summary>Q6_K: bits 2T..2T+1 of each high-bit byte moved to bits 4..5 (16-bit shifts; the caller masks).</summary>
        static abstract Vector256<byte> HighBits(Vector256<byte> qh);
    }

    private struct Sub0 : ISub
    {
        public static int T => 0;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> HighBits(Vector256<byte> qh) => Avx2.ShiftLeftLogical(qh.AsUInt16(), 4).AsByte();
    }

    private struct Sub1 : ISub
    {
        public static int T => 1;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> HighBits(Vector256<byte> qh) => Avx2.ShiftLeftLogical(qh.AsUInt16(), 2).AsByte();
    }

    private struct Sub2 : ISub
    {
        public static int T => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> HighBits(Vector256<byte> qh) => qh;
    }

    private struct Sub3 : ISub
    {
        public static int T => 3;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> HighBits(Vector256<byte> qh) => Avx2.ShiftRightLogical(qh.AsUInt16(), 2).AsByte();
    }

    private struct Q4Panel : IKPanel
    {
        public static int RecordBytes => Q4KRecordBytes;
        public static bool HasMin => true;
        public static int SubBlocksPerChunk => 2;
        public static int GroupsPerRun => 8;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Levels<TSub>(byte* record, int chunk, int g) where TSub : ISub
        {
            var raw = Vector256.Load(record + Q4Quants + 256 * chunk + 32 * g);
            if (TSub.T != 0) raw = Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte();
            return raw & Vector256.Create((byte)0x0F);
        }
    }

    private struct Q5Panel : IKPanel
    {
        public static int RecordBytes => Q5KRecordBytes;
        public static bool HasMin => true;
        public static int SubBlocksPerChunk => 2;
        public static int GroupsPerRun => 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Levels<TSub>(byte* record, int chunk, int g) where TSub : ISub
        {
            // Written out rather than through Q5LowLevels / Q5HighLevels: with vector arguments to the inlined helpers,
            // the JIT copied them through the stack in this (larger) method.
            var raw = Vector256.Load(record + Q5Quant(chunk, g));
            var bits = Vector256.Load(record + Q5Fifth(chunk, g)).AsUInt16();
            if (TSub.T == 0)
                return (raw & Vector256.Create((byte)0x0F)) | (Vector256.ShiftLeft(bits, 4 - (g & 3)).AsByte() & Vector256.Create((byte)0x10));
            return (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F))
                | (Vector256.ShiftRightLogical(bits, g & 3).AsByte() & Vector256.Create((byte)0x10));
        }
    }

    private struct Q6Panel : IKPanel
    {
        public static int RecordBytes => Q6KRecordBytes;
        public static bool HasMin => false;
        public static int SubBlocksPerChunk => 4;
        public static int GroupsPerRun => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Levels<TSub>(byte* record, int chunk, int g) where TSub : ISub
        {
            var nibbles = Vector256.Load(record + Q6Quants + 768 * chunk + 256 * (TSub.T & 1) + 32 * g);
            if (TSub.T >= 2) nibbles = Avx2.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte();
            var high = TSub.HighBits(Vector256.Load(record + Q6Quants + 768 * chunk + 512 + 32 * g));
            return (nibbles & Vector256.Create((byte)0x0F)) | (high & Vector256.Create((byte)0x30));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast4(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    /// <summary>8 unsigned bytes (one per row) as 16-bit pairs: short 2i = short 2i + 1 = byte i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> DupUnsigned(byte* bytes)
    {
        var v = Vector256.Create(*(ulong*)bytes).AsByte();
        const byte Z = 0x80;
        var mask = Vector256.Create((byte)0, Z, 0, Z, 1, Z, 1, Z, 2, Z, 2, Z, 3, Z, 3, Z,
                                    4, Z, 4, Z, 5, Z, 5, Z, 6, Z, 6, Z, 7, Z, 7, Z);
        return Avx2.Shuffle(v, mask).AsInt16();
    }

    /// <summary>Q6_K: signed scale of group 2p + t of each row as 16-bit pairs (byte placed high, then shifted down with its sign).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> DupSigned(byte* pairs, int t)
    {
        var v = Vector256.Create(Vector128.Load(pairs));
        const byte Z = 0x80; // stays >= 0x80 (a zero) when t is added
        var mask = Vector256.Create(Z, 0, Z, 0, Z, 2, Z, 2, Z, 4, Z, 4, Z, 6, Z, 6,
                                    Z, 8, Z, 8, Z, 10, Z, 10, Z, 12, Z, 12, Z, 14, Z, 14);
        if (t != 0) mask += Vector256.Create((byte)t);
        return Avx2.ShiftRightArithmetic(Avx2.Shuffle(v, mask).AsInt16(), 8);
    }

    /// <summary>8 finite IEEE halves as floats, exactly (magnitude bits moved into float position, rescaled by 2^112).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halfs8(byte* p)
    {
        var h = Avx2.ConvertToVector256Int32((ushort*)p);
        var magnitude = Avx2.ShiftLeftLogical(h & Vector256.Create(0x7FFF), 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsInt32() | Avx2.ShiftLeftLogical(h & Vector256.Create(0x8000), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Madd(Vector256<byte> levels, byte* activations) => Avx2.MultiplyAddAdjacent(levels, Broadcast4(activations));

    /// <summary>
    /// Sub-block j = chunk * SubBlocksPerChunk + t of the record against TCols columns (activation quants at q0..q3).
    /// Q4_K: all 8 groups summed in 16 bits (8 * 2 * 15 * 128 &lt; 2^15), one scale multiply-add. Q5_K: two runs of 4 groups
    /// (4 * 2 * 31 * 128 = 31744 &lt; 2^15; 8 groups would saturate), one multiply-add each. Q6_K: two groups at a time
    /// (2 * 2 * 63 * 128 &lt; 2^15), one multiply-add per pair with its 16-value group's scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock<TPanel, TCols, TSub, TDot>(byte* record, int chunk, byte* q0, byte* q1, byte* q2, byte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
        where TPanel : IKPanel where TCols : IColumnCount where TSub : ISub where TDot : IWordDot256
    {
        int j = chunk * TPanel.SubBlocksPerChunk + TSub.T;
        int xo = 32 * j;
        if (TPanel.HasMin)
        {
            Vector256<short> a0 = default, a1 = default, a2 = default, a3 = default;
            var sc = DupUnsigned(record + Q4Scales + 8 * j);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 0, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 1, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 2, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 3, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            if (TPanel.GroupsPerRun == 4)
            {
                s0 = TDot.Add(s0, a0, sc);
                a0 = default;
                if (TCols.Count == 4)
                {
                    s1 = TDot.Add(s1, a1, sc);
                    s2 = TDot.Add(s2, a2, sc);
                    s3 = TDot.Add(s3, a3, sc);
                    a1 = a2 = a3 = default;
                }
            }
            Q4Group<TPanel, TCols, TSub>(record, chunk, 4, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 5, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 6, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            Q4Group<TPanel, TCols, TSub>(record, chunk, 7, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref a0, ref a1, ref a2, ref a3);
            s0 = TDot.Add(s0, a0, sc);
            if (TCols.Count == 4)
            {
                s1 = TDot.Add(s1, a1, sc);
                s2 = TDot.Add(s2, a2, sc);
                s3 = TDot.Add(s3, a3, sc);
            }
        }
        else
        {
            var sc = DupSigned(record + Q6Scales + 16 * j, 0);
            Q6Pair<TPanel, TCols, TSub, TDot>(record, chunk, 0, sc, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref s0, ref s1, ref s2, ref s3);
            Q6Pair<TPanel, TCols, TSub, TDot>(record, chunk, 2, sc, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref s0, ref s1, ref s2, ref s3);
            sc = DupSigned(record + Q6Scales + 16 * j, 1);
            Q6Pair<TPanel, TCols, TSub, TDot>(record, chunk, 4, sc, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref s0, ref s1, ref s2, ref s3);
            Q6Pair<TPanel, TCols, TSub, TDot>(record, chunk, 6, sc, q0 + xo, q1 + xo, q2 + xo, q3 + xo, ref s0, ref s1, ref s2, ref s3);
        }
    }

    /// <summary>Q4_K / Q5_K group g of a sub-block: 16-bit sums (written out per g so offsets and shifts are constants).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4Group<TPanel, TCols, TSub>(byte* record, int chunk, int g, byte* q0, byte* q1, byte* q2, byte* q3,
        ref Vector256<short> a0, ref Vector256<short> a1, ref Vector256<short> a2, ref Vector256<short> a3)
        where TPanel : IKPanel where TCols : IColumnCount where TSub : ISub
    {
        var l = TPanel.Levels<TSub>(record, chunk, g);
        a0 += Madd(l, q0 + 4 * g);
        if (TCols.Count == 4)
        {
            a1 += Madd(l, q1 + 4 * g);
            a2 += Madd(l, q2 + 4 * g);
            a3 += Madd(l, q3 + 4 * g);
        }
    }

    /// <summary>Q6_K groups g and g + 1 of a sub-block, scaled into the 32-bit sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6Pair<TPanel, TCols, TSub, TDot>(byte* record, int chunk, int g, Vector256<short> sc, byte* q0, byte* q1, byte* q2, byte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
        where TPanel : IKPanel where TCols : IColumnCount where TSub : ISub where TDot : IWordDot256
    {
        var l0 = TPanel.Levels<TSub>(record, chunk, g);
        var l1 = TPanel.Levels<TSub>(record, chunk, g + 1);
        int o = 4 * g;
        s0 = TDot.Add(s0, Madd(l0, q0 + o) + Madd(l1, q0 + o + 4), sc);
        if (TCols.Count == 4)
        {
            s1 = TDot.Add(s1, Madd(l0, q1 + o) + Madd(l1, q1 + o + 4), sc);
            s2 = TDot.Add(s2, Madd(l0, q2 + o) + Madd(l1, q2 + o + 4), sc);
            s3 = TDot.Add(s3, Madd(l0, q3 + o) + Madd(l1, q3 + o + 4), sc);
        }
    }

    /// <summary>
    /// Two Q4_K / Q5_K sub-blocks compiled as one method: a whole block in one method exceeds the JIT's inlining budget (the
    /// helpers would become calls), while a call per pair costs little against 512 values of 8 rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void SubBlockPair<TPanel, TCols, TA, TB, TDot>(byte* record, int chunk, byte* q0, byte* q1, byte* q2, byte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
        where TPanel : IKPanel where TCols : IColumnCount where TA : ISub where TB : ISub where TDot : IWordDot256
    {
        Vector256<int> a0 = s0, a1 = default, a2 = default, a3 = default;
        if (TCols.Count == 4) { a1 = s1; a2 = s2; a3 = s3; }
        SubBlock<TPanel, TCols, TA, TDot>(record, chunk, q0, q1, q2, q3, ref a0, ref a1, ref a2, ref a3);
        SubBlock<TPanel, TCols, TB, TDot>(record, chunk, q0, q1, q2, q3, ref a0, ref a1, ref a2, ref a3);
        s0 = a0;
        if (TCols.Count == 4) { s1 = a1; s2 = a2; s3 = a3; }
    }

    /// <summary>One Q6_K sub-block as its own method (two of them already exceed the inlining budget).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void SubBlockAlone<TPanel, TCols, TSub, TDot>(byte* record, int chunk, byte* q0, byte* q1, byte* q2, byte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
        where TPanel : IKPanel where TCols : IColumnCount where TSub : ISub where TDot : IWordDot256
    {
        Vector256<int> a0 = s0, a1 = default, a2 = default, a3 = default;
        if (TCols.Count == 4) { a1 = s1; a2 = s2; a3 = s3; }
        SubBlock<TPanel, TCols, TSub, TDot>(record, chunk, q0, q1, q2, q3, ref a0, ref a1, ref a2, ref a3);
        s0 = a0;
        if (TCols.Count == 4) { s1 = a1; s2 = a2; s3 = a3; }
    }

    /// <summary>The per-block bsum term of each row: Q4_K / Q5_K sum(min_j * (bsum_2j + bsum_2j+1)), Q6_K sum(scale_g * bsum_g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BsumTerm<TPanel>(byte* record, byte* xb) where TPanel : IKPanel
    {
        Vector256<int> sum = default;
        byte* bsums = xb + KQuant.Q8Bsums;
        for (int p = 0; p < 8; p++)
        {
            var factors = TPanel.HasMin
                ? DupUnsigned(record + Q4Mins + 8 * p)
                : Avx2.ConvertToVector256Int16((sbyte*)(record + Q6Scales + 16 * p));
            sum += Avx2.MultiplyAddAdjacent(Vector256.Create(*(int*)(bsums + 4 * p)).AsInt16(), factors);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Finish<TPanel>(Vector256<float> acc, Vector256<int> isum, Vector256<float> d, Vector256<float> dmin,
        byte* record, byte* xb) where TPanel : IKPanel
    {
        var yd = Vector256.Create(*(float*)xb);
        var bsumTerm = BsumTerm<TPanel>(record, xb);
        if (!TPanel.HasMin) isum -= Avx2.ShiftLeftLogical(bsumTerm, 5);
        acc = Fma.MultiplyAdd(d * yd, Avx.ConvertToVector256Single(isum), acc);
        if (TPanel.HasMin) acc = Fma.MultiplyAddNegated(dmin * yd, Avx.ConvertToVector256Single(bsumTerm), acc);
        return acc;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // Tier-0 code would call every unrolled helper
    private static void PanelAvx2<TPanel, TCols, TDot>(byte* panel, int blocks, byte* x, long xStride, float* y, long yStride)
        where TPanel : IKPanel where TCols : IColumnCount where TDot : IWordDot256
    {
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* record = panel;
        int chunks = 8 / TPanel.SubBlocksPerChunk;
        for (int b = 0; b < blocks; b++, record += TPanel.RecordBytes)
        {
            long xo = (long)b * KQuant.Q8BlockBytes;
            byte* x0 = x + xo, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
            byte* q0 = x0 + KQuant.Q8Quants, q1 = x1 + KQuant.Q8Quants, q2 = x2 + KQuant.Q8Quants, q3 = x3 + KQuant.Q8Quants;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                if (TPanel.SubBlocksPerChunk == 2)
                {
                    SubBlockPair<TPanel, TCols, Sub0, Sub1, TDot>(record, chunk, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
                }
                else
                {
                    SubBlockAlone<TPanel, TCols, Sub0, TDot>(record, chunk, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
                    SubBlockAlone<TPanel, TCols, Sub1, TDot>(record, chunk, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
                    SubBlockAlone<TPanel, TCols, Sub2, TDot>(record, chunk, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
                    SubBlockAlone<TPanel, TCols, Sub3, TDot>(record, chunk, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
                }
            }
            var d = Halfs8(record);
            var dmin = TPanel.HasMin ? Halfs8(record + 16) : default;
            acc0 = Finish<TPanel>(acc0, s0, d, dmin, record, x0);
            if (TCols.Count == 4)
            {
                acc1 = Finish<TPanel>(acc1, s1, d, dmin, record, x1);
                acc2 = Finish<TPanel>(acc2, s2, d, dmin, record, x2);
                acc3 = Finish<TPanel>(acc3, s3, d, dmin, record, x3);
            }
        }
        acc0.Store(y);
        if (TCols.Count == 4)
        {
            acc1.Store(y + yStride);
            acc2.Store(y + 2 * yStride);
            acc3.Store(y + 3 * yStride);
        }
    }

    // ---------------------------------------------------------------- Vector128 (Arm, or x64 without AVX2)

    internal static void Tile128(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
    {
        if (Dp.IsSupported) Tile128<RepackKernels.DotProduct4>(m, panels, panelCount, x, xStride, cols, y, yStride);
        else Tile128<RepackKernels.PortableDot4>(m, panels, panelCount, x, xStride, cols, y, yStride);
    }

    internal static void Tile128Portable(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride) =>
        Tile128<RepackKernels.PortableDot4>(m, panels, panelCount, x, xStride, cols, y, yStride);

    /// <summary>Levels of group g of sub-block j for rows 4 * half .. 4 * half + 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Levels128(GgmlType type, byte* record, int j, int g, int half)
    {
        var mask = Vector128.Create((byte)0x0F);
        if (type == GgmlType.Q4_K)
        {
            var raw = Vector128.Load(record + Q4Quants + 32 * (8 * (j >> 1) + g) + 16 * half);
            return (((j & 1) != 0 ? Vector128.ShiftRightLogical(raw, 4) : raw) & mask).AsSByte();
        }
        if (type == GgmlType.Q5_K)
        {
            var raw = Vector128.Load(record + Q5Quant(j >> 1, g) + 16 * half);
            var bits = Vector128.Load(record + Q5Fifth(j >> 1, g) + 16 * half);
            int bit = g & 3;
            var fifth = ((j & 1) != 0 ? Vector128.ShiftRightLogical(bits, bit) : Vector128.ShiftLeft(bits, 4 - bit)) & Vector128.Create((byte)0x10);
            return ((((j & 1) != 0 ? Vector128.ShiftRightLogical(raw, 4) : raw) & mask) | fifth).AsSByte();
        }
        int h = j >> 2, t = j & 3;
        var nibbles = Vector128.Load(record + Q6Nibbles(2 * h + (t & 1)) + 32 * g + 16 * half);
        var high = Vector128.Load(record + Q6High(h) + 32 * g + 16 * half);
        var low = (t >= 2 ? Vector128.ShiftRightLogical(nibbles, 4) : nibbles) & mask;
        return (low | (Vector128.ShiftLeft(Vector128.ShiftRightLogical(high, 2 * t) & Vector128.Create((byte)3), 4))).AsSByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Widen4(byte* p, bool signed) => signed
        ? Vector128.Create((sbyte)p[0], (sbyte)p[1], (sbyte)p[2], (sbyte)p[3])
        : Vector128.Create(p[0], p[1], p[2], p[3]);

    private static void Tile128<TDot>(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride)
        where TDot : RepackKernels.IDot4
    {
        GgmlType type = m.Type;
        bool hasMin = type != GgmlType.Q6_K;
        for (int p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * m.PanelStride;
            for (int c = 0; c < cols; c++)
                for (int half = 0; half < 2; half++)
                {
                    var acc = Vector128<float>.Zero;
                    for (int b = 0; b < m.Blocks; b++)
                    {
                        byte* record = panel + (long)b * m.BlockBytes;
                        byte* xb = x + c * xStride + (long)b * KQuant.Q8BlockBytes;
                        byte* q8 = xb + KQuant.Q8Quants;
                        short* bsums = (short*)(xb + KQuant.Q8Bsums);
                        var isum = Vector128<int>.Zero;
                        var bsumTerm = Vector128<int>.Zero;
                        for (int j = 0; j < 8; j++)
                        {
                            if (hasMin)
                            {
                                var dot = Vector128<int>.Zero;
                                for (int g = 0; g < 8; g++)
                                    dot = TDot.Dot(dot, Levels128(type, record, j, g, half), Vector128.Create(*(int*)(q8 + 32 * j + 4 * g)).AsSByte());
                                isum += dot * Widen4(record + Q4Scales + 8 * j + 4 * half, false);
                                bsumTerm += Widen4(record + Q4Mins + 8 * j + 4 * half, false) * Vector128.Create(bsums[2 * j] + bsums[2 * j + 1]);
                            }
                            else
                            {
                                for (int t = 0; t < 2; t++)
                                {
                                    var dot = Vector128<int>.Zero;
                                    for (int g = 4 * t; g < 4 * t + 4; g++)
                                        dot = TDot.Dot(dot, Levels128(type, record, j, g, half), Vector128.Create(*(int*)(q8 + 32 * j + 4 * g)).AsSByte());
                                    byte* s = record + Q6Scales + 16 * j + 8 * half + t;
                                    var scale = Vector128.Create((sbyte)s[0], (sbyte)s[2], (sbyte)s[4], (sbyte)s[6]);
                                    isum += dot * scale;
                                    bsumTerm += scale * Vector128.Create((int)bsums[2 * j + t]);
                                }
                            }
                        }
                        float yd = *(float*)xb;
                        var d = Half4(record + 8 * half) * Vector128.Create(yd);
                        if (!hasMin) isum -= bsumTerm << 5;
                        acc = Vector128.FusedMultiplyAdd(d, Vector128.ConvertToSingle(isum), acc);
                        if (hasMin)
                        {
                            var dmin = Half4(record + 16 + 8 * half) * Vector128.Create(yd);
                            acc = Vector128.FusedMultiplyAdd(-dmin, Vector128.ConvertToSingle(bsumTerm), acc);
                        }
                    }
                    acc.Store(y + c * yStride + p * Rows + 4 * half);
                }
        }
    }

    private static Vector128<float> Half4(byte* p) => Vector128.Create(
        HalfPrecision.FromF16(*(ushort*)p), HalfPrecision.FromF16(*(ushort*)(p + 2)),
        HalfPrecision.FromF16(*(ushort*)(p + 4)), HalfPrecision.FromF16(*(ushort*)(p + 6)));
}
