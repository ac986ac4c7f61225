using EdgeLM.Kernels;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The blocked online-softmax attention kernel: every lane width against the scalar instantiation (bitwise, they
/// perform the same fused operations per element), against a float64 softmax attention, and a row's bits alone
/// versus inside a block of rows. Vector512/256 paths run (emulated) even without hardware support.
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class AttentionTests
{
    private delegate void KernelPath(in AttentionItem item, AttentionScratch scratch);

    private static readonly (string Name, KernelPath Run)[] Paths =
    [
        ("scalar", Attention.ComputeScalar),
        ("128", (in AttentionItem item, AttentionScratch s) => Attention.Compute<AttentionLanes128>(item, s)),
        ("256", (in AttentionItem item, AttentionScratch s) => Attention.Compute<AttentionLanes256>(item, s)),
        ("512", (in AttentionItem item, AttentionScratch s) => Attention.Compute<AttentionLanes512>(item, s)),
        ("dispatch", Attention.Compute),
    ];

    /// <summary>
    /// One sequence's attention inputs: queries [row][kvHeads * group * headDim], keys/values [position][kvHeads *
    /// headDim] as float and as half, positions of the rows.
    /// </summary>
    private sealed class Case
    {
        public required int HeadDim, Group, KvHeads, Context;
        public required float[] Queries, Keys, Values;
        public required ushort[] HalfKeys, HalfValues;
        public required int[] Positions;
        public int QDim => KvHeads * Group * HeadDim;
        public int KvDim => KvHeads * HeadDim;

        public static Case Create(int headDim, int group, int kvHeads, int[] positions, int seed, float queryScale = 3f)
        {
            var random = new Random(seed);
            int context = positions.Max() + 1;
            float[] Fill(int n, float scale) => Enumerable.Range(0, n).Select(_ => scale * (float)(random.NextDouble() * 2 - 1)).ToArray();
            var c = new Case
            {
                HeadDim = headDim, Group = group, KvHeads = kvHeads, Context = context, Positions = positions,
                Queries = Fill(positions.Length * kvHeads * group * headDim, queryScale),
                Keys = Fill(context * kvHeads * headDim, 1f), Values = Fill(context * kvHeads * headDim, 1f),
                HalfKeys = [], HalfValues = [],
            };
            c.HalfKeys = c.Keys.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
            c.HalfValues = c.Values.Select(x => BitConverter.HalfToUInt16Bits((Half)x)).ToArray();
            return c;
        }

        /// <summary>Runs rows [firstRow, firstRow + rows) x heads [headBegin, headBegin + heads) of KV head kvHead into output.</summary>
        public void Run(KernelPath path, float[] output, bool half, int kvHead, int firstRow, int rows, int headBegin, int heads, AttentionScratch? scratch = null)
        {
            scratch ??= new AttentionScratch(rows * heads, HeadDim);
            fixed (float* q = Queries, o = output, k = Keys, v = Values)
            fixed (ushort* hk = HalfKeys, hv = HalfValues)
            fixed (int* p = Positions)
            {
                int headOffset = (kvHead * Group + headBegin) * HeadDim;
                long kvOffset = (long)kvHead * HeadDim;
                var item = new AttentionItem
                {
                    Queries = q + (long)firstRow * QDim + headOffset,
                    Output = o + (long)firstRow * QDim + headOffset,
                    RowStride = QDim,
                    Positions = p + firstRow,
                    Rows = rows,
                    Heads = heads,
                    HeadDim = HeadDim,
                    Keys = half ? (byte*)(hk + kvOffset) : (byte*)(k + kvOffset),
                    Values = half ? (byte*)(hv + kvOffset) : (byte*)(v + kvOffset),
                    KvStride = KvDim,
                    HalfCache = half,
                    Scale = 1f / MathF.Sqrt(HeadDim),
                };
                path(item, scratch);
            }
        }

        /// <summary>Every row and head, one item per (KV head, block of up to rowsPerItem rows).</summary>
        public float[] RunAll(KernelPath path, bool half, int rowsPerItem)
        {
            var output = new float[Positions.Length * QDim];
            for (int kv = 0; kv < KvHeads; kv++)
                for (int first = 0; first < Positions.Length; first += rowsPerItem)
                    Run(path, output, half, kv, first, Math.Min(rowsPerItem, Positions.Length - first), 0, Group);
            return output;
        }

        /// <summary>Plain float64 softmax attention over positions [0, position] (half caches: the rounded values).</summary>
        public double[] Reference(bool half)
        {
            var output = new double[Positions.Length * QDim];
            double scale = 1.0 / Math.Sqrt(HeadDim);
            double Key(int i) => half ? (double)BitConverter.UInt16BitsToHalf(HalfKeys[i]) : Keys[i];
            double Value(int i) => half ? (double)BitConverter.UInt16BitsToHalf(HalfValues[i]) : Values[i];
            for (int r = 0; r < Positions.Length; r++)
                for (int head = 0; head < KvHeads * Group; head++)
                {
                    int kv = head / Group, visible = Positions[r] + 1;
                    var scores = new double[visible];
                    for (int j = 0; j < visible; j++)
                    {
                        double s = 0;
                        for (int d = 0; d < HeadDim; d++) s += Queries[r * QDim + head * HeadDim + d] * Key(j * KvDim + kv * HeadDim + d);
                        scores[j] = s * scale;
                    }
                    double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                    for (int j = 0; j < visible; j++)
                    {
                        double weight = Math.Exp(scores[j] - max) / sum;
                        for (int d = 0; d < HeadDim; d++) output[r * QDim + head * HeadDim + d] += weight * Value(j * KvDim + kv * HeadDim + d);
                    }
                }
            return output;
        }
    }

    private static int[] Consecutive(int first, int count) => Enumerable.Range(first, count).ToArray();

    public static TheoryData<int, int, int, int, int> Shapes => new()
    {
        // headDim, group, kvHeads, first position, rows
        { 64, 7, 2, 0, 70 },   // Qwen2.5-0.5B: 14 query heads over 2 KV heads, prompt crossing two block edges
        { 64, 7, 1, 95, 1 },   // decode at the last key of a block
        { 64, 7, 1, 96, 1 },   // decode at the first key of a block
        { 20, 2, 2, 30, 5 },   // rows straddling a block edge, head dim not a multiple of the vector
        { 9, 1, 3, 0, 33 },    // odd head dim, plain multi-head attention
        { 12, 3, 1, 61, 6 },
        { 128, 2, 1, 5, 3 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesFloat64SoftmaxAttention(int headDim, int group, int kvHeads, int first, int rows)
    {
        foreach (bool half in new[] { false, true })
        {
            var c = Case.Create(headDim, group, kvHeads, Consecutive(first, rows), seed: headDim * 31 + rows);
            double[] expected = c.Reference(half);
            float[] actual = c.RunAll(Attention.Compute, half, rowsPerItem: 4);
            // Float32 sums of up to ~100 products of values in [-3, 3]; outputs are convex mixtures of values in [-1, 1].
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 2e-5, $"half={half} element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryLaneWidthMatchesScalarBitwise(int headDim, int group, int kvHeads, int first, int rows)
    {
        var c = Case.Create(headDim, group, kvHeads, Consecutive(first, rows), seed: headDim + rows);
        foreach (bool half in new[] { false, true })
        {
            float[] scalar = c.RunAll(Paths[0].Run, half, rowsPerItem: 3);
            foreach (var (name, run) in Paths[1..])
                Assert.True(scalar.AsSpan().SequenceEqual(c.RunAll(run, half, rowsPerItem: 3)), $"{name} lanes differ from scalar (half={half})");
        }
    }

    [Fact]
    public void RowAloneEqualsRowInsideBlockBitwise()
    {
        // 7 heads per KV head, rows 27..44 (crossing the edge at 32): the whole block in one item, then each row with a
        // single head alone, against a cache whose positions past that row hold inf and NaN (stale or unwritten).
        var c = Case.Create(64, 7, 1, Consecutive(27, 18), seed: 5);
        foreach (bool half in new[] { false, true })
        {
            var block = new float[c.Positions.Length * c.QDim];
            c.Run(Attention.Compute, block, half, 0, 0, c.Positions.Length, 0, c.Group);
            foreach (int row in new[] { 0, 4, 5, 17 })
            {
                var poisoned = Case.Create(64, 7, 1, c.Positions, seed: 5);
                for (int i = (c.Positions[row] + 1) * c.KvDim; i < poisoned.Keys.Length; i++)
                {
                    poisoned.Keys[i] = i % 2 == 0 ? float.NaN : float.PositiveInfinity;
                    poisoned.Values[i] = i % 2 == 0 ? float.PositiveInfinity : float.NaN;
                    poisoned.HalfKeys[i] = 0x7E00;
                    poisoned.HalfValues[i] = 0x7C00;
                }
                var alone = new float[c.Positions.Length * c.QDim];
                for (int head = 0; head < c.Group; head++)
                {
                    poisoned.Run(Attention.Compute, alone, half, 0, row, 1, head, 1);
                    var expected = block.AsSpan(row * c.QDim + head * c.HeadDim, c.HeadDim);
                    var actual = alone.AsSpan(row * c.QDim + head * c.HeadDim, c.HeadDim);
                    Assert.True(expected.SequenceEqual(actual), $"row {row} head {head} (half={half}) differs alone");
                }
            }
        }
    }

    public static TheoryData<int, int, int, int[], int> TiledItems => new()
    {
        // headDim, group, kvHeads, row positions, rows per item: items of many queries take the three-query-vector
        // score tile and the three-query value tile at every width (16 lanes from 48 queries on).
        { 64, 7, 2, Consecutive(0, 70), 10 },          // Qwen2.5-0.5B items: 70 queries, diagonal blocks at 32 and 64
        { 64, 1, 1, Consecutive(25, 52), 52 },         // one head: queries of a value tile see 1, 2, 3... keys of a block
        { 40, 2, 1, Consecutive(29, 31), 31 },         // 62 queries (not a multiple of 3), head dim tail past 32
        { 20, 3, 1, Consecutive(60, 17), 17 },         // head dim below one value tile of 8 lanes
        { 64, 1, 1, [40, 3, 33, 31, 64, 0, 95, 32, 31, 7, 63, 64, 1, 2, 96, 50, 18, 33, 34, 12], 20 }, // scattered rows
        { 9, 5, 1, [5, 0, 70, 31, 32, 33, 12, 64, 2, 40], 10 }, // odd head dim, first query of a tile seeing the fewest keys
    };

    [Theory]
    [MemberData(nameof(TiledItems))]
    public void TiledItemsMatchScalarAndFloat64(int headDim, int group, int kvHeads, int[] positions, int rowsPerItem)
    {
        var c = Case.Create(headDim, group, kvHeads, positions, seed: headDim * 7 + positions.Length);
        foreach (bool half in new[] { false, true })
        {
            float[] scalar = c.RunAll(Paths[0].Run, half, rowsPerItem);
            foreach (var (name, run) in Paths[1..])
                Assert.True(scalar.AsSpan().SequenceEqual(c.RunAll(run, half, rowsPerItem)), $"{name} lanes differ from scalar (half={half})");
            // The one-row items never reach the tiles: the tiled block must give every row's single-row bits.
            Assert.True(scalar.AsSpan().SequenceEqual(c.RunAll(Paths[0].Run, half, rowsPerItem: 1)), $"scalar block differs from single rows (half={half})");
            Assert.True(scalar.AsSpan().SequenceEqual(c.RunAll(Attention.Compute, half, rowsPerItem: 1)), $"dispatch single rows differ (half={half})");
            double[] expected = c.Reference(half);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - scalar[i]) <= 2e-5, $"half={half} element {i}: expected {expected[i]}, got {scalar[i]}");
        }
    }

    [Fact]
    public void KeysPastARowNeverReachItInsideATile()
    {
        // A NaN key at position 45 and an infinite value at 45: rows before it must stay finite and keep their
        // single-row bits when they share a score or value tile with rows that see those positions (the masked
        // probability is +0, and 0 * inf would poison a row that did not skip the key).
        // Value tiles take queries three by three: each of a tile's places holds the row that sees the fewest keys once.
        int[] positions = [46, 50, 40, 40, 46, 50, 50, 40, 46, 31, 64, 0, 19, 44, 3, 45, 21, 20];
        foreach (bool half in new[] { false, true })
        {
            var c = Case.Create(16, 1, 1, positions, seed: 8);
            for (int d = 0; d < c.HeadDim; d++)
            {
                c.Keys[45 * c.KvDim + d] = float.NaN;
                c.HalfKeys[45 * c.KvDim + d] = 0x7E00;
                c.Values[45 * c.KvDim + d] = float.PositiveInfinity;
                c.HalfValues[45 * c.KvDim + d] = 0x7C00;
            }
            float[] single = c.RunAll(Paths[0].Run, half, rowsPerItem: 1);
            for (int r = 0; r < positions.Length; r++)
                for (int d = 0; d < c.HeadDim; d++)
                    if (positions[r] < 45) Assert.True(float.IsFinite(single[r * c.QDim + d]), $"row at {positions[r]} (half={half}) not finite");
            foreach (var (name, run) in Paths)
            {
                float[] block = c.RunAll(run, half, rowsPerItem: positions.Length);
                for (int r = 0; r < positions.Length; r++)
                    Assert.True(single.AsSpan(r * c.QDim, c.QDim).SequenceEqual(block.AsSpan(r * c.QDim, c.QDim)),
                        $"{name}: row at {positions[r]} (half={half}) differs inside the block");
            }
        }
    }

    [Fact]
    public void SameResultWithAnyRowsPerItem()
    {
        var c = Case.Create(64, 7, 2, Consecutive(0, 41), seed: 9);
        float[] one = c.RunAll(Attention.Compute, half: true, rowsPerItem: 1);
        foreach (int rowsPerItem in new[] { 2, 5, 9 })
            Assert.True(one.AsSpan().SequenceEqual(c.RunAll(Attention.Compute, half: true, rowsPerItem)), $"{rowsPerItem} rows per item");
    }

    [Fact]
    public void LargeScoresStayFinite()
    {
        // Scores near +-200 would overflow exp without the running maximum.
        var c = Case.Create(64, 2, 1, Consecutive(0, 40), seed: 3, queryScale: 60f);
        double[] expected = c.Reference(half: false);
        float[] actual = c.RunAll(Attention.Compute, half: false, rowsPerItem: 8);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4, $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void ItemLargerThanScratchIsRejected()
    {
        var c = Case.Create(16, 4, 1, Consecutive(0, 3), seed: 1);
        var output = new float[3 * c.QDim];
        var ex = Assert.Throws<ArgumentException>(() => c.Run(Attention.Compute, output, false, 0, 0, 3, 0, 4, new AttentionScratch(8, 16)));
        Assert.Contains("exceeds its scratch", ex.Message);
    }

    [Fact]
    public void ExpIsWithinTwoUlpsOfMathFExp()
    {
        var random = new Random(2);
        for (int i = 0; i < 200_000; i++)
        {
            float x = i < 1000 ? -i * 0.0873f : (float)(random.NextDouble() * -87.3);
            float expected = MathF.Exp(x), actual = Attention.ExpScalar(x);
            int ulps = Math.Abs(BitConverter.SingleToInt32Bits(expected) - BitConverter.SingleToInt32Bits(actual));
            Assert.True(ulps <= 2, $"exp({x:R}): {actual:R} vs MathF.Exp {expected:R} ({ulps} ulps)");
        }
        Assert.Equal(1f, Attention.ExpScalar(0f));
        Assert.Equal(0f, Attention.ExpScalar(float.NegativeInfinity));
        Assert.Equal(0f, Attention.ExpScalar(-100f));
        Assert.True(float.IsNaN(Attention.ExpScalar(float.NaN)));
    }

    [Fact]
    public void VectorExpMatchesScalarBitwise()
    {
        var random = new Random(4);
        float[] inputs = new float[4096];
        for (int i = 0; i < inputs.Length; i++) inputs[i] = (float)(random.NextDouble() * -100);
        float[] special = [0f, -0f, float.NegativeInfinity, float.NaN, Attention.ExpMinArgument, -87.4f, -1e-30f, 3f];
        special.CopyTo(inputs, 0);
        float[] scalar = inputs.Select(Attention.ExpScalar).ToArray();
        Assert.Equal(scalar, ApplyExp<AttentionLanes128>(inputs));
        Assert.Equal(scalar, ApplyExp<AttentionLanes256>(inputs));
        Assert.Equal(scalar, ApplyExp<AttentionLanes512>(inputs));
    }

    private static float[] ApplyExp<TL>(float[] inputs) where TL : struct, IAttentionLanes<TL>
    {
        var output = new float[inputs.Length];
        fixed (float* x = inputs, y = output)
            for (int i = 0; i + TL.Count <= inputs.Length; i += TL.Count) TL.Store(TL.Exp(TL.Load(x + i)), y + i);
        return output;
    }
}
