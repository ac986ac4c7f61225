using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLM.Kernels;

/// <summary>
/// One work item of causal attention: consecutive query heads of several rows of one sequence against that
/// sequence's cached keys and values of one KV head. Query (row r, head h) is at
/// <c>Queries + r * RowStride + h * HeadDim</c>, its output at the same offset from <c>Output</c>; cached position p's
/// key/value vector starts <c>p * KvStride</c> elements after <c>Keys</c>/<c>Values</c> (F32 or, with
/// <c>HalfCache</c>, IEEE half). Row r sees positions [0, Positions[r]].
/// </summary>
internal unsafe struct AttentionItem
{
    public float* Queries;
    public float* Output;
    public long RowStride;
    public int* Positions;
    public int Rows;
    public int Heads;
    public int HeadDim;
    public byte* Keys;
    public byte* Values;
    public long KvStride;
    public bool HalfCache;
    public float Scale;
}

/// <summary>
/// Per-thread scratch of <see cref="Attention"/>, sized once by the largest item (queries per item, head size):
/// nothing in it grows with the context.
/// </summary>
internal sealed unsafe class AttentionScratch
{
    // Queries are padded to the widest vector so every lane width can use the same layout.
    private const int LanePadding = 16;

    private readonly float[] _memory;
    public int MaxQueries { get; }
    public int HeadDim { get; }
    internal readonly float* TransposedQueries; // [queryVector][dim][lane], scaled
    internal readonly float* Probabilities;     // [queryVector][key of block][lane]: scores, then exp(score - max)
    internal readonly float* Accumulators;      // [query][dim]: unnormalized output
    internal readonly float* RunningMax, RunningSum, Correction, QueryPositions; // [query], padded
    internal readonly float* KeyBlock, ValueBlock; // one block of an F16 cache as dense floats, [key][dim]

    public AttentionScratch(int maxQueries, int headDim)
    {
        if (maxQueries <= 0 || headDim <= 0) throw new ArgumentException($"attention scratch for {maxQueries} queries of {headDim} dims");
        MaxQueries = maxQueries;
        HeadDim = headDim;
        long padded = (maxQueries + LanePadding - 1) / LanePadding * LanePadding;
        long[] sizes =
        [
            padded * headDim, padded * Attention.BlockKeys, (long)maxQueries * headDim,
            padded, padded, padded, padded, (long)Attention.BlockKeys * headDim, (long)Attention.BlockKeys * headDim,
        ];
        long total = 16; // room to align the start to 64 bytes
        foreach (long s in sizes) total += Aligned(s);
        _memory = GC.AllocateArray<float>(checked((int)total), pinned: true);
        var start = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_memory));
        var cursor = (float*)(((nint)start + 63) & ~(nint)63);
        float* Take(long count) { float* p = cursor; cursor += Aligned(count); return p; }
        TransposedQueries = Take(sizes[0]);
        Probabilities = Take(sizes[1]);
        Accumulators = Take(sizes[2]);
        RunningMax = Take(sizes[3]);
        RunningSum = Take(sizes[4]);
        Correction = Take(sizes[5]);
        QueryPositions = Take(sizes[6]);
        KeyBlock = Take(sizes[7]);
        ValueBlock = Take(sizes[8]);
    }

    private static long Aligned(long count) => (count + 15) & ~15L;
}

/// <summary>
/// Causal softmax attention without a score matrix: keys are visited in blocks of <see cref="BlockKeys"/> positions
/// at fixed absolute offsets (0, 32, 64, ...), and each query keeps a running maximum, a running sum and an
/// unnormalized output that are rescaled when the maximum grows (online softmax). All queries of an item share every
/// key/value block they load (F16 caches are converted once per block per item), scores are computed with queries
/// in the vector lanes (no horizontal sums), and the weighted sum of values runs along the head dimension. Both run
/// on register tiles (three query vectors x four keys; three queries x four head-dimension vectors) so that each
/// load feeds several fused multiply-adds; a query that sees fewer keys of a block than its tile neighbours (the
/// causal diagonal) stops at its own last key.
/// <para>Determinism: every (query, key) score is a sequential fused multiply-add chain over the head dimension, and
/// every output element, maximum and sum is updated in key order with the same operations whatever the lane width,
/// the query's lane, the other queries of the item or how many rows it has. Keys beyond a query's position are masked
/// to -inf (probability +0, which leaves a positive running sum exactly unchanged) and skipped in the weighted sum,
/// so a row gives bitwise the same output decoded alone or inside a prompt block. The scalar instantiation
/// (<see cref="ComputeScalar"/>) performs the same operations one lane at a time.</para>
/// </summary>
internal static unsafe class Attention
{
    /// <summary>Keys per block; blocks start at multiples of this position.</summary>
    public const int BlockKeys = 32;

    public static void Compute(in AttentionItem item, AttentionScratch scratch)
    {
        if (Vector512.IsHardwareAccelerated) Compute<AttentionLanes512>(item, scratch);
        else if (Vector256.IsHardwareAccelerated) Compute<AttentionLanes256>(item, scratch);
        else if (Vector128.IsHardwareAccelerated) Compute<AttentionLanes128>(item, scratch);
        else Compute<AttentionLanes1>(item, scratch);
    }

    public static void ComputeScalar(in AttentionItem item, AttentionScratch scratch) => Compute<AttentionLanes1>(item, scratch);

    internal static void Compute<TL>(in AttentionItem item, AttentionScratch scratch) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count, hd = item.HeadDim, rows = item.Rows, heads = item.Heads;
        int queries = rows * heads;
        if (queries > scratch.MaxQueries || hd != scratch.HeadDim)
            throw new ArgumentException($"attention item of {queries} queries x {hd} dims exceeds its scratch ({scratch.MaxQueries} x {scratch.HeadDim})");
        int vectors = (queries + w - 1) / w;
        float* qt = scratch.TransposedQueries, probabilities = scratch.Probabilities, acc = scratch.Accumulators;
        float* runningMax = scratch.RunningMax, runningSum = scratch.RunningSum, correction = scratch.Correction;
        float* queryPositions = scratch.QueryPositions;

        int maxPosition = 0;
        for (int r = 0; r < rows; r++) maxPosition = Math.Max(maxPosition, item.Positions[r]);
        for (int m = 0; m < vectors * w; m++)
        {
            float* t = qt + (long)(m / w) * hd * w + m % w;
            if (m < queries)
            {
                float* q = item.Queries + m / heads * item.RowStride + (long)(m % heads) * hd;
                for (int d = 0; d < hd; d++) t[(long)d * w] = q[d] * item.Scale;
                queryPositions[m] = item.Positions[m / heads];
            }
            else
            {
                // Padding lanes: zero queries that see every key, so they stay finite and are never read back.
                for (int d = 0; d < hd; d++) t[(long)d * w] = 0;
                queryPositions[m] = float.PositiveInfinity;
            }
            runningMax[m] = float.NegativeInfinity;
            runningSum[m] = 0;
        }
        new Span<float>(acc, queries * hd).Clear();

        for (int start = 0; start <= maxPosition; start += BlockKeys)
        {
            int count = Math.Min(BlockKeys, maxPosition + 1 - start);
            // An F16 block is converted into dense scratch once per item and shared by all its queries; an F32 block is
            // read in place (a copy measured slower than the strided reads it saves).
            float* keys, values;
            long stride;
            if (item.HalfCache)
            {
                keys = scratch.KeyBlock;
                values = scratch.ValueBlock;
                stride = hd;
                ushort* k16 = (ushort*)item.Keys + start * item.KvStride, v16 = (ushort*)item.Values + start * item.KvStride;
                for (int j = 0; j < count; j++)
                {
                    RowConvert.HalfToSingle(k16 + j * item.KvStride, keys + j * hd, hd);
                    RowConvert.HalfToSingle(v16 + j * item.KvStride, values + j * hd, hd);
                }
            }
            else
            {
                keys = (float*)item.Keys + start * item.KvStride;
                values = (float*)item.Values + start * item.KvStride;
                stride = item.KvStride;
            }

            int vector = 0;
            for (; vector + ScoreTileVectors <= vectors; vector += ScoreTileVectors)
                ScoresTile<TL>(qt + (long)vector * hd * w, keys, stride, count, hd, probabilities + (long)vector * BlockKeys * w);
            for (; vector < vectors; vector++)
                Scores<TL>(qt + (long)vector * hd * w, keys, stride, count, hd, probabilities + (long)vector * BlockKeys * w);
            for (int v = 0; v < vectors; v++)
                UpdateSoftmax<TL>(probabilities + (long)v * BlockKeys * w, count, start, v * w, queryPositions, runningMax, runningSum, correction);

            int m = 0;
            for (; m + ValueTileQueries <= queries; m += ValueTileQueries)
            {
                int visible0 = Visible(item, m / heads, start, count);
                int visible1 = Visible(item, (m + 1) / heads, start, count);
                int visible2 = Visible(item, (m + 2) / heads, start, count);
                // Keys all three queries see go through the shared tile; a query that sees more (the causal diagonal)
                // continues alone from there, which is the same key-ordered chain per element. Once the tile has
                // applied the correction, the continuation scales by exactly 1.
                int shared = Math.Max(0, Math.Min(visible0, Math.Min(visible1, visible2)));
                if (shared > 0) WeightedValuesTile<TL>(probabilities, values, stride, shared, m, correction, acc, hd);
                ContinueAlone<TL>(probabilities, values, stride, shared, visible0, m, correction, acc, hd);
                ContinueAlone<TL>(probabilities, values, stride, shared, visible1, m + 1, correction, acc, hd);
                ContinueAlone<TL>(probabilities, values, stride, shared, visible2, m + 2, correction, acc, hd);
            }
            for (; m < queries; m++)
                ContinueAlone<TL>(probabilities, values, stride, 0, Visible(item, m / heads, start, count), m, correction, acc, hd);
        }

        for (int m = 0; m < queries; m++)
        {
            float* o = item.Output + m / heads * item.RowStride + (long)(m % heads) * hd;
            float inverse = 1f / runningSum[m];
            float* a = acc + (long)m * hd;
            var inverseLanes = TL.Broadcast(inverse);
            int d = 0;
            for (; d + w <= hd; d += w) TL.Store(TL.Multiply(TL.Load(a + d), inverseLanes), o + d);
            for (; d < hd; d++) o[d] = a[d] * inverse;
        }
    }

    // Register tiles (16 vector registers on x64 without AVX-512): 12 accumulators, 3 reused operands and one
    // streamed operand, so each 12 fused multiply-adds cost 7 loads instead of 13-14. FMA throughput on this class of
    // core is only reached with few loads per FMA.
    private const int ScoreTileVectors = 3, ScoreTileKeys = 4;
    private const int ValueTileQueries = 3, ValueTileVectors = 4;

    /// <summary>Keys of a block row <paramref name="row"/> sees: 0 when its position is before the block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Visible(in AttentionItem item, int row, int start, int count) => Math.Max(0, Math.Min(count, item.Positions[row] - start + 1));

    /// <summary>
    /// Adds keys [from, visible) of the block to query m alone; the correction is applied here when no earlier key
    /// of this block was (from == 0). No visible key: the maximum did not move, the correction is exactly 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ContinueAlone<TL>(float* probabilities, float* values, long stride, int from, int visible, int m,
        float* correction, float* acc, int hd) where TL : struct, IAttentionLanes<TL>
    {
        if (visible <= from) return;
        int w = TL.Count;
        float* p = probabilities + (long)(m / w) * BlockKeys * w + m % w + (long)from * w;
        WeightedValues<TL>(p, w, values + from * stride, stride, visible - from, from == 0 ? correction[m] : 1f, acc + (long)m * hd, hd);
    }

    /// <summary>
    /// <see cref="Scores{TL}"/> for three consecutive query vectors at once (vector v's scores at scores + v *
    /// BlockKeys * w): each loaded query vector and each broadcast key value feeds three or four chains.
    /// </summary>
    private static void ScoresTile<TL>(float* qt, float* keys, long stride, int count, int hd, float* scores) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count, j = 0;
        long qStride = (long)hd * w, sStride = (long)BlockKeys * w;
        for (; j + ScoreTileKeys <= count; j += ScoreTileKeys)
        {
            float* k0 = keys + j * stride, k1 = k0 + stride, k2 = k1 + stride, k3 = k2 + stride;
            TL a00 = TL.Zero, a01 = TL.Zero, a02 = TL.Zero, a03 = TL.Zero;
            TL a10 = TL.Zero, a11 = TL.Zero, a12 = TL.Zero, a13 = TL.Zero;
            TL a20 = TL.Zero, a21 = TL.Zero, a22 = TL.Zero, a23 = TL.Zero;
            float* q = qt;
            for (int d = 0; d < hd; d++, q += w)
            {
                var q0 = TL.Load(q);
                var q1 = TL.Load(q + qStride);
                var q2 = TL.Load(q + 2 * qStride);
                var k = TL.Broadcast(k0[d]);
                a00 = TL.MultiplyAdd(k, q0, a00); a10 = TL.MultiplyAdd(k, q1, a10); a20 = TL.MultiplyAdd(k, q2, a20);
                k = TL.Broadcast(k1[d]);
                a01 = TL.MultiplyAdd(k, q0, a01); a11 = TL.MultiplyAdd(k, q1, a11); a21 = TL.MultiplyAdd(k, q2, a21);
                k = TL.Broadcast(k2[d]);
                a02 = TL.MultiplyAdd(k, q0, a02); a12 = TL.MultiplyAdd(k, q1, a12); a22 = TL.MultiplyAdd(k, q2, a22);
                k = TL.Broadcast(k3[d]);
                a03 = TL.MultiplyAdd(k, q0, a03); a13 = TL.MultiplyAdd(k, q1, a13); a23 = TL.MultiplyAdd(k, q2, a23);
            }
            float* s0 = scores + j * w, s1 = s0 + sStride, s2 = s1 + sStride;
            TL.Store(a00, s0); TL.Store(a01, s0 + w); TL.Store(a02, s0 + 2 * w); TL.Store(a03, s0 + 3 * w);
            TL.Store(a10, s1); TL.Store(a11, s1 + w); TL.Store(a12, s1 + 2 * w); TL.Store(a13, s1 + 3 * w);
            TL.Store(a20, s2); TL.Store(a21, s2 + w); TL.Store(a22, s2 + 2 * w); TL.Store(a23, s2 + 3 * w);
        }
        for (; j < count; j++)
        {
            float* k0 = keys + j * stride;
            TL a0 = TL.Zero, a1 = TL.Zero, a2 = TL.Zero;
            float* q = qt;
            for (int d = 0; d < hd; d++, q += w)
            {
                var k = TL.Broadcast(k0[d]);
                a0 = TL.MultiplyAdd(k, TL.Load(q), a0);
                a1 = TL.MultiplyAdd(k, TL.Load(q + qStride), a1);
                a2 = TL.MultiplyAdd(k, TL.Load(q + 2 * qStride), a2);
            }
            float* s0 = scores + j * w;
            TL.Store(a0, s0); TL.Store(a1, s0 + sStride); TL.Store(a2, s0 + 2 * sStride);
        }
    }

    /// <summary>
    /// <see cref="WeightedValues{TL}"/> for queries m, m+1, m+2 over the first <paramref name="count"/> keys of the
    /// block (all three see them), each with its own correction: each loaded value vector feeds three chains, each
    /// broadcast probability four. The head dimension past the last whole tile goes through the one-query loop.
    /// </summary>
    private static void WeightedValuesTile<TL>(float* probabilities, float* values, long stride, int count, int m,
        float* correction, float* acc, int hd) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count, d = 0;
        float* p0 = probabilities + (long)(m / w) * BlockKeys * w + m % w;
        float* p1 = probabilities + (long)((m + 1) / w) * BlockKeys * w + (m + 1) % w;
        float* p2 = probabilities + (long)((m + 2) / w) * BlockKeys * w + (m + 2) % w;
        long offset1 = p1 - p0, offset2 = p2 - p0; // one walking pointer: fewer registers in the key loop
        float* c0 = acc + (long)m * hd, c1 = c0 + hd, c2 = c1 + hd;
        var f0 = TL.Broadcast(correction[m]);
        var f1 = TL.Broadcast(correction[m + 1]);
        var f2 = TL.Broadcast(correction[m + 2]);
        for (; d + ValueTileVectors * w <= hd; d += ValueTileVectors * w)
        {
            TL a00 = TL.Multiply(TL.Load(c0 + d), f0), a01 = TL.Multiply(TL.Load(c0 + d + w), f0);
            TL a02 = TL.Multiply(TL.Load(c0 + d + 2 * w), f0), a03 = TL.Multiply(TL.Load(c0 + d + 3 * w), f0);
            TL a10 = TL.Multiply(TL.Load(c1 + d), f1), a11 = TL.Multiply(TL.Load(c1 + d + w), f1);
            TL a12 = TL.Multiply(TL.Load(c1 + d + 2 * w), f1), a13 = TL.Multiply(TL.Load(c1 + d + 3 * w), f1);
            TL a20 = TL.Multiply(TL.Load(c2 + d), f2), a21 = TL.Multiply(TL.Load(c2 + d + w), f2);
            TL a22 = TL.Multiply(TL.Load(c2 + d + 2 * w), f2), a23 = TL.Multiply(TL.Load(c2 + d + 3 * w), f2);
            float* v = values + d, p = p0;
            for (int j = 0; j < count; j++, v += stride, p += w)
            {
                var b0 = TL.Broadcast(p[0]);
                var b1 = TL.Broadcast(p[offset1]);
                var b2 = TL.Broadcast(p[offset2]);
                var x = TL.Load(v);
                a00 = TL.MultiplyAdd(b0, x, a00); a10 = TL.MultiplyAdd(b1, x, a10); a20 = TL.MultiplyAdd(b2, x, a20);
                x = TL.Load(v + w);
                a01 = TL.MultiplyAdd(b0, x, a01); a11 = TL.MultiplyAdd(b1, x, a11); a21 = TL.MultiplyAdd(b2, x, a21);
                x = TL.Load(v + 2 * w);
                a02 = TL.MultiplyAdd(b0, x, a02); a12 = TL.MultiplyAdd(b1, x, a12); a22 = TL.MultiplyAdd(b2, x, a22);
                x = TL.Load(v + 3 * w);
                a03 = TL.MultiplyAdd(b0, x, a03); a13 = TL.MultiplyAdd(b1, x, a13); a23 = TL.MultiplyAdd(b2, x, a23);
            }
            TL.Store(a00, c0 + d); TL.Store(a01, c0 + d + w); TL.Store(a02, c0 + d + 2 * w); TL.Store(a03, c0 + d + 3 * w);
            TL.Store(a10, c1 + d); TL.Store(a11, c1 + d + w); TL.Store(a12, c1 + d + 2 * w); TL.Store(a13, c1 + d + 3 * w);
            TL.Store(a20, c2 + d); TL.Store(a21, c2 + d + w); TL.Store(a22, c2 + d + 2 * w); TL.Store(a23, c2 + d + 3 * w);
        }
        if (d < hd)
        {
            WeightedValues<TL>(p0, w, values + d, stride, count, correction[m], c0 + d, hd - d);
            WeightedValues<TL>(p1, w, values + d, stride, count, correction[m + 1], c1 + d, hd - d);
            WeightedValues<TL>(p2, w, values + d, stride, count, correction[m + 2], c2 + d, hd - d);
        }
    }

    /// <summary>scores[j * w + lane] = sum over d, in order, of keys[j][d] * qt[d][lane] (one FMA chain per pair).</summary>
    private static void Scores<TL>(float* qt, float* keys, long stride, int count, int hd, float* scores) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count, j = 0;
        // Eight keys per pass: eight independent FMA chains hide the latency; each key value is a broadcast load.
        for (; j + 8 <= count; j += 8)
        {
            float* k0 = keys + j * stride, k1 = k0 + stride, k2 = k1 + stride, k3 = k2 + stride;
            float* k4 = k3 + stride, k5 = k4 + stride, k6 = k5 + stride, k7 = k6 + stride;
            TL a0 = TL.Zero, a1 = TL.Zero, a2 = TL.Zero, a3 = TL.Zero, a4 = TL.Zero, a5 = TL.Zero, a6 = TL.Zero, a7 = TL.Zero;
            float* q = qt;
            for (int d = 0; d < hd; d++, q += w)
            {
                var qv = TL.Load(q);
                a0 = TL.MultiplyAdd(TL.Broadcast(k0[d]), qv, a0);
                a1 = TL.MultiplyAdd(TL.Broadcast(k1[d]), qv, a1);
                a2 = TL.MultiplyAdd(TL.Broadcast(k2[d]), qv, a2);
                a3 = TL.MultiplyAdd(TL.Broadcast(k3[d]), qv, a3);
                a4 = TL.MultiplyAdd(TL.Broadcast(k4[d]), qv, a4);
                a5 = TL.MultiplyAdd(TL.Broadcast(k5[d]), qv, a5);
                a6 = TL.MultiplyAdd(TL.Broadcast(k6[d]), qv, a6);
                a7 = TL.MultiplyAdd(TL.Broadcast(k7[d]), qv, a7);
            }
            float* s = scores + j * w;
            TL.Store(a0, s); TL.Store(a1, s + w); TL.Store(a2, s + 2 * w); TL.Store(a3, s + 3 * w);
            TL.Store(a4, s + 4 * w); TL.Store(a5, s + 5 * w); TL.Store(a6, s + 6 * w); TL.Store(a7, s + 7 * w);
        }
        for (; j + 2 <= count; j += 2)
        {
            float* k0 = keys + j * stride, k1 = k0 + stride;
            TL a0 = TL.Zero, a1 = TL.Zero;
            float* q = qt;
            for (int d = 0; d < hd; d++, q += w)
            {
                var qv = TL.Load(q);
                a0 = TL.MultiplyAdd(TL.Broadcast(k0[d]), qv, a0);
                a1 = TL.MultiplyAdd(TL.Broadcast(k1[d]), qv, a1);
            }
            TL.Store(a0, scores + j * w);
            TL.Store(a1, scores + (j + 1) * w);
        }
        for (; j < count; j++)
        {
            float* k0 = keys + j * stride;
            TL a0 = TL.Zero;
            float* q = qt;
            for (int d = 0; d < hd; d++, q += w) a0 = TL.MultiplyAdd(TL.Broadcast(k0[d]), TL.Load(q), a0);
            TL.Store(a0, scores + j * w);
        }
    }

    /// <summary>
    /// Masks keys past each lane's position, moves the running maximum to include this block, turns the block's
    /// scores into exp(score - max) in place and rescales the running sum; leaves each lane's rescale factor in
    /// correction[].
    /// </summary>
    private static void UpdateSoftmax<TL>(float* scores, int count, int start, int firstQuery, float* queryPositions,
        float* runningMax, float* runningSum, float* correction) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count;
        var positions = TL.Load(queryPositions + firstQuery);
        var blockMax = TL.Broadcast(float.NegativeInfinity);
        float firstPosition = queryPositions[firstQuery];
        for (int lane = 1; lane < w; lane++) firstPosition = Math.Min(firstPosition, queryPositions[firstQuery + lane]);
        if (firstPosition >= start + count - 1)
        {
            // Every lane sees the whole block (all blocks but the diagonal): the mask would change nothing.
            for (int j = 0; j < count; j++) blockMax = TL.Max(blockMax, TL.Load(scores + j * w));
        }
        else
        {
            for (int j = 0; j < count; j++)
            {
                var s = TL.MaskAfter(TL.Load(scores + j * w), start + j, positions);
                TL.Store(s, scores + j * w);
                blockMax = TL.Max(blockMax, s);
            }
        }
        var oldMax = TL.Load(runningMax + firstQuery);
        var newMax = TL.Max(oldMax, blockMax);
        var factor = TL.Exp(TL.Subtract(oldMax, newMax));
        var sum = TL.Multiply(TL.Load(runningSum + firstQuery), factor);
        for (int j = 0; j < count; j++)
        {
            var e = TL.Exp(TL.Subtract(TL.Load(scores + j * w), newMax));
            TL.Store(e, scores + j * w);
            sum = TL.Add(sum, e);
        }
        TL.Store(newMax, runningMax + firstQuery);
        TL.Store(sum, runningSum + firstQuery);
        TL.Store(factor, correction + firstQuery);
    }

    /// <summary>acc = acc * factor, then acc += p[j * pStride] * values[j] for j in key order.</summary>
    private static void WeightedValues<TL>(float* p, int pStride, float* values, long stride, int count, float factor,
        float* acc, int hd) where TL : struct, IAttentionLanes<TL>
    {
        int w = TL.Count, d = 0;
        var f = TL.Broadcast(factor);
        // Eight vectors of the head dimension per pass (64 floats with AVX2): eight independent FMA chains.
        for (; d + 8 * w <= hd; d += 8 * w)
        {
            float* a = acc + d;
            TL a0 = TL.Multiply(TL.Load(a), f), a1 = TL.Multiply(TL.Load(a + w), f);
            TL a2 = TL.Multiply(TL.Load(a + 2 * w), f), a3 = TL.Multiply(TL.Load(a + 3 * w), f);
            TL a4 = TL.Multiply(TL.Load(a + 4 * w), f), a5 = TL.Multiply(TL.Load(a + 5 * w), f);
            TL a6 = TL.Multiply(TL.Load(a + 6 * w), f), a7 = TL.Multiply(TL.Load(a + 7 * w), f);
            float* v = values + d;
            for (int j = 0; j < count; j++, v += stride)
            {
                var pj = TL.Broadcast(p[j * pStride]);
                a0 = TL.MultiplyAdd(pj, TL.Load(v), a0);
                a1 = TL.MultiplyAdd(pj, TL.Load(v + w), a1);
                a2 = TL.MultiplyAdd(pj, TL.Load(v + 2 * w), a2);
                a3 = TL.MultiplyAdd(pj, TL.Load(v + 3 * w), a3);
                a4 = TL.MultiplyAdd(pj, TL.Load(v + 4 * w), a4);
                a5 = TL.MultiplyAdd(pj, TL.Load(v + 5 * w), a5);
                a6 = TL.MultiplyAdd(pj, TL.Load(v + 6 * w), a6);
                a7 = TL.MultiplyAdd(pj, TL.Load(v + 7 * w), a7);
            }
            TL.Store(a0, a); TL.Store(a1, a + w); TL.Store(a2, a + 2 * w); TL.Store(a3, a + 3 * w);
            TL.Store(a4, a + 4 * w); TL.Store(a5, a + 5 * w); TL.Store(a6, a + 6 * w); TL.Store(a7, a + 7 * w);
        }
        for (; d + 2 * w <= hd; d += 2 * w)
        {
            float* a = acc + d;
            TL a0 = TL.Multiply(TL.Load(a), f), a1 = TL.Multiply(TL.Load(a + w), f);
            float* v = values + d;
            for (int j = 0; j < count; j++, v += stride)
            {
                var pj = TL.Broadcast(p[j * pStride]);
                a0 = TL.MultiplyAdd(pj, TL.Load(v), a0);
                a1 = TL.MultiplyAdd(pj, TL.Load(v + w), a1);
            }
            TL.Store(a0, a); TL.Store(a1, a + w);
        }
        for (; d + w <= hd; d += w)
        {
            float* a = acc + d;
            TL a0 = TL.Multiply(TL.Load(a), f);
            float* v = values + d;
            for (int j = 0; j < count; j++, v += stride) a0 = TL.MultiplyAdd(TL.Broadcast(p[j * pStride]), TL.Load(v), a0);
            TL.Store(a0, a);
        }
        for (; d < hd; d++)
        {
            float a = acc[d] * factor;
            for (int j = 0; j < count; j++) a = MathF.FusedMultiplyAdd(p[j * pStride], values[j * stride + d], a);
            acc[d] = a;
        }
    }

    // exp(x) for x <= 0 (softmax arguments), Cephes expf with fused steps: |error| within ~1 ulp of MathF.Exp for
    // x >= -87.3; below that (results under the smallest normal float) it returns 0, which a softmax cannot tell
    // from the true value. NaN stays NaN. Shared by every lane width, so all widths agree bitwise.
    internal const float ExpMinArgument = -87.33654f;
    internal const float Log2E = 1.44269504088896341f;
    internal const float Ln2High = 0.693359375f;    // few mantissa bits: n * Ln2High is exact
    internal const float Ln2Low = -2.12194440e-4f;
    internal const float ExpP0 = 1.9875691500e-4f, ExpP1 = 1.3981999507e-3f, ExpP2 = 8.3334519073e-3f;
    internal const float ExpP3 = 4.1665795894e-2f, ExpP4 = 1.6666665459e-1f, ExpP5 = 5.0000001201e-1f;

    /// <summary>The scalar definition every vector Exp of <see cref="IAttentionLanes{TSelf}"/> reproduces bitwise.</summary>
    internal static float ExpScalar(float x)
    {
        float c = ExpMinArgument > x ? ExpMinArgument : x;
        float n = MathF.Floor(c * Log2E + 0.5f);
        float r = MathF.FusedMultiplyAdd(n, -Ln2High, c);
        r = MathF.FusedMultiplyAdd(n, -Ln2Low, r);
        float z = r * r;
        float y = MathF.FusedMultiplyAdd(ExpP0, r, ExpP1);
        y = MathF.FusedMultiplyAdd(y, r, ExpP2);
        y = MathF.FusedMultiplyAdd(y, r, ExpP3);
        y = MathF.FusedMultiplyAdd(y, r, ExpP4);
        y = MathF.FusedMultiplyAdd(y, r, ExpP5);
        y = MathF.FusedMultiplyAdd(y, z, r) + 1f;
        float e = y * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
        return x < ExpMinArgument ? 0f : e;
    }
}

/// <summary>The lane operations <see cref="Attention"/> needs, one struct per width (1 = scalar reference).</summary>
internal unsafe interface IAttentionLanes<TSelf> where TSelf : struct, IAttentionLanes<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Load(float* p);
    static abstract void Store(TSelf v, float* p);
    static abstract TSelf Broadcast(float value);
    /// <summary>a * b + addend with one rounding.</summary>
    static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf addend);
    static abstract TSelf Multiply(TSelf a, TSelf b);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf Subtract(TSelf a, TSelf b);
    /// <summary>a &gt; b ? a : b per lane (defined for NaN, unlike a platform max).</summary>
    static abstract TSelf Max(TSelf a, TSelf b);
    /// <summary>-inf in the lanes whose query position is below <paramref name="keyPosition"/>, scores elsewhere.</summary>
    static abstract TSelf MaskAfter(TSelf scores, float keyPosition, TSelf queryPositions);
    /// <summary><see cref="Attention.ExpScalar"/> per lane.</summary>
    static abstract TSelf Exp(TSelf x);
}

internal readonly unsafe struct AttentionLanes1 : IAttentionLanes<AttentionLanes1>
{
    private readonly float _v;
    private AttentionLanes1(float v) => _v = v;

    public static int Count => 1;
    public static AttentionLanes1 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Load(float* p) => new(*p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(AttentionLanes1 v, float* p) => *p = v._v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Broadcast(float value) => new(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 MultiplyAdd(AttentionLanes1 a, AttentionLanes1 b, AttentionLanes1 addend) => new(MathF.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Multiply(AttentionLanes1 a, AttentionLanes1 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Add(AttentionLanes1 a, AttentionLanes1 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Subtract(AttentionLanes1 a, AttentionLanes1 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Max(AttentionLanes1 a, AttentionLanes1 b) => new(a._v > b._v ? a._v : b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 MaskAfter(AttentionLanes1 scores, float keyPosition, AttentionLanes1 queryPositions) => new(keyPosition > queryPositions._v ? float.NegativeInfinity : scores._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes1 Exp(AttentionLanes1 x) => new(Attention.ExpScalar(x._v));
}

internal readonly unsafe struct AttentionLanes128 : IAttentionLanes<AttentionLanes128>
{
    private readonly Vector128<float> _v;
    private AttentionLanes128(Vector128<float> v) => _v = v;

    public static int Count => 4;
    public static AttentionLanes128 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(AttentionLanes128 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Broadcast(float value) => new(Vector128.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 MultiplyAdd(AttentionLanes128 a, AttentionLanes128 b, AttentionLanes128 addend) => new(Fma.IsSupported ? Fma.MultiplyAdd(a._v, b._v, addend._v) : Vector128.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Multiply(AttentionLanes128 a, AttentionLanes128 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Add(AttentionLanes128 a, AttentionLanes128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Subtract(AttentionLanes128 a, AttentionLanes128 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes128 Max(AttentionLanes128 a, AttentionLanes128 b) => new(Vector128.ConditionalSelect(Vector128.GreaterThan(a._v, b._v), a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes128 MaskAfter(AttentionLanes128 scores, float keyPosition, AttentionLanes128 queryPositions) =>
        new(Vector128.ConditionalSelect(Vector128.GreaterThan(Vector128.Create(keyPosition), queryPositions._v), Vector128.Create(float.NegativeInfinity), scores._v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes128 Exp(AttentionLanes128 x)
    {
        var v = x._v;
        var min = Vector128.Create(Attention.ExpMinArgument);
        var c = Vector128.ConditionalSelect(Vector128.GreaterThan(min, v), min, v);
        var n = Vector128.Floor(c * Vector128.Create(Attention.Log2E) + Vector128.Create(0.5f));
        var r = Fma128(n, Vector128.Create(-Attention.Ln2High), c);
        r = Fma128(n, Vector128.Create(-Attention.Ln2Low), r);
        var z = r * r;
        var y = Fma128(Vector128.Create(Attention.ExpP0), r, Vector128.Create(Attention.ExpP1));
        y = Fma128(y, r, Vector128.Create(Attention.ExpP2));
        y = Fma128(y, r, Vector128.Create(Attention.ExpP3));
        y = Fma128(y, r, Vector128.Create(Attention.ExpP4));
        y = Fma128(y, r, Vector128.Create(Attention.ExpP5));
        y = Fma128(y, z, r) + Vector128.Create(1f);
        var scale = ((Vector128.ConvertToInt32(n) + Vector128.Create(127)) << 23).AsSingle();
        return new(Vector128.ConditionalSelect(Vector128.LessThan(v, min), Vector128<float>.Zero, y * scale));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Fma128(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : Vector128.FusedMultiplyAdd(a, b, c);
}

internal readonly unsafe struct AttentionLanes256 : IAttentionLanes<AttentionLanes256>
{
    private readonly Vector256<float> _v;
    private AttentionLanes256(Vector256<float> v) => _v = v;

    public static int Count => 8;
    public static AttentionLanes256 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(AttentionLanes256 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Broadcast(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 MultiplyAdd(AttentionLanes256 a, AttentionLanes256 b, AttentionLanes256 addend) => new(Fma256(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Multiply(AttentionLanes256 a, AttentionLanes256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Add(AttentionLanes256 a, AttentionLanes256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Subtract(AttentionLanes256 a, AttentionLanes256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes256 Max(AttentionLanes256 a, AttentionLanes256 b) => new(Vector256.ConditionalSelect(Vector256.GreaterThan(a._v, b._v), a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes256 MaskAfter(AttentionLanes256 scores, float keyPosition, AttentionLanes256 queryPositions) =>
        new(Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Create(keyPosition), queryPositions._v), Vector256.Create(float.NegativeInfinity), scores._v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes256 Exp(AttentionLanes256 x)
    {
        var v = x._v;
        var min = Vector256.Create(Attention.ExpMinArgument);
        var c = Vector256.ConditionalSelect(Vector256.GreaterThan(min, v), min, v);
        var n = Vector256.Floor(c * Vector256.Create(Attention.Log2E) + Vector256.Create(0.5f));
        var r = Fma256(n, Vector256.Create(-Attention.Ln2High), c);
        r = Fma256(n, Vector256.Create(-Attention.Ln2Low), r);
        var z = r * r;
        var y = Fma256(Vector256.Create(Attention.ExpP0), r, Vector256.Create(Attention.ExpP1));
        y = Fma256(y, r, Vector256.Create(Attention.ExpP2));
        y = Fma256(y, r, Vector256.Create(Attention.ExpP3));
        y = Fma256(y, r, Vector256.Create(Attention.ExpP4));
        y = Fma256(y, r, Vector256.Create(Attention.ExpP5));
        y = Fma256(y, z, r) + Vector256.Create(1f);
        var scale = ((Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23).AsSingle();
        return new(Vector256.ConditionalSelect(Vector256.LessThan(v, min), Vector256<float>.Zero, y * scale));
    }

    // Fma.MultiplyAdd rather than FusedMultiplyAdd: it lets the JIT pick the form that accumulates in place.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma256(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : Vector256.FusedMultiplyAdd(a, b, c);
}

internal readonly unsafe struct AttentionLanes512 : IAttentionLanes<AttentionLanes512>
{
    private readonly Vector512<float> _v;
    private AttentionLanes512(Vector512<float> v) => _v = v;

    public static int Count => 16;
    public static AttentionLanes512 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(AttentionLanes512 v, float* p) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Broadcast(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 MultiplyAdd(AttentionLanes512 a, AttentionLanes512 b, AttentionLanes512 addend) => new(Vector512.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Multiply(AttentionLanes512 a, AttentionLanes512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Add(AttentionLanes512 a, AttentionLanes512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Subtract(AttentionLanes512 a, AttentionLanes512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static AttentionLanes512 Max(AttentionLanes512 a, AttentionLanes512 b) => new(Vector512.ConditionalSelect(Vector512.GreaterThan(a._v, b._v), a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes512 MaskAfter(AttentionLanes512 scores, float keyPosition, AttentionLanes512 queryPositions) =>
        new(Vector512.ConditionalSelect(Vector512.GreaterThan(Vector512.Create(keyPosition), queryPositions._v), Vector512.Create(float.NegativeInfinity), scores._v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AttentionLanes512 Exp(AttentionLanes512 x)
    {
        var v = x._v;
        var min = Vector512.Create(Attention.ExpMinArgument);
        var c = Vector512.ConditionalSelect(Vector512.GreaterThan(min, v), min, v);
        var n = Vector512.Floor(c * Vector512.Create(Attention.Log2E) + Vector512.Create(0.5f));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Attention.Ln2High), c);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Attention.Ln2Low), r);
        var z = r * r;
        var y = Vector512.FusedMultiplyAdd(Vector512.Create(Attention.ExpP0), r, Vector512.Create(Attention.ExpP1));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(Attention.ExpP2));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(Attention.ExpP3));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(Attention.ExpP4));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(Attention.ExpP5));
        y = Vector512.FusedMultiplyAdd(y, z, r) + Vector512.Create(1f);
        var scale = ((Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23).AsSingle();
        return new(Vector512.ConditionalSelect(Vector512.LessThan(v, min), Vector512<float>.Zero, y * scale));
    }
}
