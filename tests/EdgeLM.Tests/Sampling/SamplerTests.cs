using EdgeLM.Inference;

namespace EdgeLM.Tests.Sampling;

public class SamplerTests
{
    private static float[] RandomLogits(int count, int seed, double scale = 2.0)
    {
        var random = new Random(seed);
        var logits = new float[count];
        for (int i = 0; i < count; i++)
        {
            // Box-Muller: roughly the shape of real logits.
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            logits[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return logits;
    }

    private static int ReferenceArgMax(float[] logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>
    /// The distribution the sampler should draw from, computed the straightforward way in double precision:
    /// full sort, penalty, top-k, softmax(logit / T), top-p (crossing token kept), min-p, renormalize.
    /// </summary>
    internal static double[] ExpectedDistribution(float[] logits, int[] recent, SamplingOptions o)
    {
        double[] s = logits.Select(x => (double)x).ToArray();
        foreach (int t in recent.Skip(Math.Max(0, recent.Length - o.RepetitionWindow)).Distinct())
            s[t] = s[t] > 0 ? s[t] / o.RepetitionPenalty : s[t] * o.RepetitionPenalty;

        var kept = Enumerable.Range(0, s.Length).OrderByDescending(i => s[i]).ThenBy(i => i).ToList();
        if (o.TopK > 0) kept = kept.Take(o.TopK).ToList();

        double max = s[kept[0]];
        var p = new double[s.Length];
        foreach (int i in kept) p[i] = Math.Exp((s[i] - max) / o.Temperature);
        double z = kept.Sum(i => p[i]);
        foreach (int i in kept) p[i] /= z;

        if (o.TopP < 1)
        {
            double cumulative = 0;
            int n = 0;
            while (n < kept.Count)
            {
                cumulative += p[kept[n++]];
                if (cumulative >= o.TopP) break;
            }
            kept = kept.Take(n).ToList();
        }
        if (o.MinP > 0)
        {
            double pMax = p[kept[0]];
            kept = kept.Where(i => p[i] >= o.MinP * pMax).ToList();
        }

        var result = new double[s.Length];
        double total = kept.Sum(i => p[i]);
        foreach (int i in kept) result[i] = p[i] / total;
        return result;
    }

    private static int[] Histogram(Sampler sampler, float[] logits, int[] recent, int draws)
    {
        var counts = new int[logits.Length];
        for (int i = 0; i < draws; i++) counts[sampler.Sample(logits, recent)]++;
        return counts;
    }

    [Fact]
    public void GreedyIsArgMaxWithLowestIndexOnTies()
    {
        var sampler = new Sampler(SamplingOptions.Greedy, 10);
        Assert.Equal(3, sampler.Sample([0f, 1f, 2f, 5f, -1f, 4f, 3f, 5f, 5f, 0f], []));
        Assert.Equal(0, sampler.Sample([7f, 7f, 7f, 7f, 7f, 7f, 7f, 7f, 7f, 7f], []));

        for (int seed = 0; seed < 20; seed++)
        {
            float[] logits = RandomLogits(1000, seed);
            var big = new Sampler(SamplingOptions.Greedy, 1000);
            Assert.Equal(ReferenceArgMax(logits), big.Sample(logits, []));
        }
    }

    [Fact]
    public void GreedyIgnoresTopKTopPMinP()
    {
        var options = new SamplingOptions { Temperature = 0f, TopK = 2, TopP = 0.1f, MinP = 0.5f, Seed = 1 };
        float[] logits = RandomLogits(500, 3);
        Assert.Equal(ReferenceArgMax(logits), new Sampler(options, 500).Sample(logits, []));
    }

    [Fact]
    public void SameSeedGivesSameSequenceDifferentSeedsDiffer()
    {
        float[] logits = RandomLogits(50, 7, scale: 0.5);
        int[] Sequence(ulong? seed, out ulong used)
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, Seed = seed }, 50);
            used = sampler.Seed;
            return Enumerable.Range(0, 500).Select(_ => sampler.Sample(logits, [])).ToArray();
        }

        Assert.Equal(Sequence(42, out _), Sequence(42, out _));
        Assert.NotEqual(Sequence(42, out _), Sequence(43, out _));
        Sequence(null, out ulong first);
        Sequence(null, out ulong second);
        Assert.NotEqual(first, second);
        int[] fromOsSeed = Sequence(null, out ulong drawn);
        Assert.Equal(fromOsSeed, Sequence(drawn, out _));
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(1f)]
    [InlineData(10f)]
    [InlineData(1000f)]
    public void TopKOneEqualsGreedyAtAnyTemperature(float temperature)
    {
        var topOne = new Sampler(new SamplingOptions { Temperature = temperature, TopK = 1, TopP = 1f, MinP = 0f, Seed = 5 }, 300);
        var greedy = new Sampler(SamplingOptions.Greedy, 300);
        for (int seed = 0; seed < 50; seed++)
        {
            float[] logits = RandomLogits(300, seed);
            if (seed % 2 == 0) logits[299] = logits[ReferenceArgMax(logits)]; // a tie at the top
            Assert.Equal(greedy.Sample(logits, []), topOne.Sample(logits, []));
        }
    }

    public static TheoryData<string, SamplingOptions, int[]> DistributionCases => new()
    {
        { "plain softmax", new() { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f }, [] },
        { "low temperature", new() { Temperature = 0.6f, TopK = 0, TopP = 1f, MinP = 0f }, [] },
        { "high temperature", new() { Temperature = 2.5f, TopK = 0, TopP = 1f, MinP = 0f }, [] },
        { "top-k", new() { Temperature = 1f, TopK = 4, TopP = 1f, MinP = 0f }, [] },
        { "top-p", new() { Temperature = 1.2f, TopK = 0, TopP = 0.7f, MinP = 0f }, [] },
        { "min-p", new() { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0.15f }, [] },
        { "all", new() { Temperature = 0.9f, TopK = 7, TopP = 0.9f, MinP = 0.05f }, [] },
        { "penalty", new() { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, RepetitionPenalty = 1.6f }, [0, 1, 2, 3, 3, 3] },
        { "penalty window", new() { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, RepetitionPenalty = 2f, RepetitionWindow = 2 }, [4, 5, 6] },
    };

    [Theory]
    [MemberData(nameof(DistributionCases))]
    public void EmpiricalFrequenciesMatchTheTruncatedRenormalizedDistribution(string name, SamplingOptions options, int[] recent)
    {
        const int draws = 20_000;
        // Logits with positive and negative values and one tie, so penalties and tie-breaking both matter.
        float[] logits = [1.5f, 2.0f, -0.5f, 0.8f, 1.0f, -1.5f, 0.3f, 2.0f, -0.2f, 0.0f, 1.2f, -3.0f];
        double[] expected = ExpectedDistribution(logits, recent, options);
        int[] counts = Histogram(new Sampler(options with { Seed = 2024 }, logits.Length), logits, recent, draws);

        double chiSquare = 0;
        int categories = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (expected[i] == 0)
            {
                Assert.True(counts[i] == 0, $"{name}: token {i} is outside the kept set but was sampled {counts[i]} times");
                continue;
            }
            double e = draws * expected[i];
            chiSquare += (counts[i] - e) * (counts[i] - e) / e;
            categories++;
        }
        // Chance of exceeding df + 6*sqrt(2 df) under the right distribution is far below 1e-4, while a wrong
        // temperature, cut or penalty shifts several percent of 20k draws and blows far past it.
        int df = Math.Max(1, categories - 1);
        Assert.True(chiSquare < df + 6 * Math.Sqrt(2 * df), $"{name}: chi-square {chiSquare:F1} with {df} degrees of freedom");
    }

    [Fact]
    public void TokensOutsideTheNucleusAreNeverSampled()
    {
        // A flat-ish 5000-token distribution puts hundreds of tokens in the nucleus, so the chunked partial
        // sort has to grow several times before the mass is reached.
        const int vocab = 5000;
        float[] logits = RandomLogits(vocab, 11, scale: 1.0);
        var options = new SamplingOptions { Temperature = 1f, TopK = 0, TopP = 0.5f, MinP = 0f, Seed = 9 };
        double[] expected = ExpectedDistribution(logits, [], options);
        int nucleus = expected.Count(p => p > 0);
        Assert.InRange(nucleus, 300, vocab - 1);

        var sampler = new Sampler(options, vocab);
        var seen = new HashSet<int>();
        for (int i = 0; i < 5000; i++)
        {
            int token = sampler.Sample(logits, []);
            Assert.True(expected[token] > 0, $"token {token} is outside the top-p nucleus");
            seen.Add(token);
        }
        Assert.True(seen.Count > nucleus / 2, $"only {seen.Count} of {nucleus} nucleus tokens were ever drawn");
    }

    [Fact]
    public void TopKOnAFullSizeVocabularyKeepsExactlyTheBestK()
    {
        const int vocab = 151_936;
        float[] logits = RandomLogits(vocab, 12);
        var order = Enumerable.Range(0, vocab).OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        var top = order.Take(40).ToHashSet();

        var sampler = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 40, TopP = 1f, MinP = 0f, Seed = 3 }, vocab);
        var seen = new HashSet<int>();
        for (int i = 0; i < 400; i++)
        {
            int token = sampler.Sample(logits, []);
            Assert.Contains(token, top);
            seen.Add(token);
        }
        Assert.True(seen.Count > 30, "at temperature 5 the top 40 are nearly uniform, so most should appear");
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        // Greedy decisions right next to the threshold pin the exact formula.
        static int Pick(float[] logits, int[] recent, float penalty, int window = 64) =>
            new Sampler(new SamplingOptions { Temperature = 0f, RepetitionPenalty = penalty, RepetitionWindow = window }, logits.Length).Sample(logits, recent);

        Assert.Equal(0, Pick([2.0f, 1.9f], [0], 1.05f));   // 2.0 / 1.05 = 1.905 > 1.9
        Assert.Equal(1, Pick([2.0f, 1.9f], [0], 1.06f));   // 2.0 / 1.06 = 1.887 < 1.9
        Assert.Equal(0, Pick([-1.0f, -1.05f], [0], 1.04f)); // -1.0 * 1.04 = -1.04 > -1.05
        Assert.Equal(1, Pick([-1.0f, -1.05f], [0], 1.06f)); // -1.06 < -1.05 (dividing would have raised it)

        // A token repeated in the window is penalized once: 2.0 / 1.04 = 1.923 > 1.9, twice would be 1.849.
        Assert.Equal(0, Pick([2.0f, 1.9f], [0, 0, 0], 1.04f));

        // Only the last `window` tokens count.
        Assert.Equal(0, Pick([2.0f, 1.9f, 0f], [0, 2, 2], 1.1f, window: 2));
        Assert.Equal(1, Pick([2.0f, 1.9f, 0f], [0, 2, 2], 1.1f, window: 3));

        // A penalty below 1 rewards repetition.
        Assert.Equal(1, Pick([2.0f, 1.9f], [1], 0.9f));
    }

    [Fact]
    public void NaNAndInfiniteLogitsAreHandled()
    {
        var greedy = new Sampler(SamplingOptions.Greedy, 4);
        var sampling = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, Seed = 1 }, 4);

        float[] withNaN = [float.NaN, 1f, float.NaN, 0.5f];
        Assert.Equal(1, greedy.Sample(withNaN, []));
        int[] counts = Histogram(sampling, withNaN, [], 2000);
        Assert.Equal(0, counts[0] + counts[2]);
        Assert.InRange(counts[1], 1100, 1400); // e^0.5 / (1 + e^0.5) = 0.62

        float[] withInfinity = [1f, float.PositiveInfinity, 3f, float.PositiveInfinity];
        Assert.Equal(1, greedy.Sample(withInfinity, []));
        counts = Histogram(sampling, withInfinity, [], 2000);
        Assert.Equal(0, counts[0] + counts[2]);
        Assert.InRange(counts[1], 850, 1150);

        float[] nothing = [float.NegativeInfinity, float.NaN, float.NegativeInfinity, float.NaN];
        var error = Assert.Throws<InvalidOperationException>(() => greedy.Sample(nothing, []));
        Assert.Contains("-infinity or NaN", error.Message);
        Assert.Throws<InvalidOperationException>(() => sampling.Sample(nothing, []));

        // Penalizing the only finite token must not make it disappear.
        var penalized = new Sampler(new SamplingOptions { Temperature = 1f, RepetitionPenalty = 3f, Seed = 2 }, 4);
        Assert.Equal(3, penalized.Sample([float.NegativeInfinity, float.NaN, float.NegativeInfinity, -2f], [3]));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        var sampler = new Sampler(new SamplingOptions { RepetitionPenalty = 1.1f }, 8);
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[7], []));
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[8], [1, 8]));
        Assert.Throws<ArgumentException>(() => sampler.Sample(new float[8], [-1]));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions(), 0));
    }

    [Fact]
    public void DoesNotAllocateAfterConstruction()
    {
        const int vocab = 32_000;
        float[] logits = RandomLogits(vocab, 21, scale: 1.0);
        int[] recent = Enumerable.Range(0, 100).Select(i => i * 31 % vocab).ToArray();
        SamplingOptions[] configurations =
        [
            SamplingOptions.Greedy with { RepetitionPenalty = 1.1f },
            new() { Seed = 1 },
            new() { Seed = 1, TopK = 0, TopP = 0.9f, MinP = 0f, RepetitionPenalty = 1.2f },
            new() { Seed = 1, TopK = 0, TopP = 1f, MinP = 0.02f },
            new() { Seed = 1, TopK = 0, TopP = 1f, MinP = 0f, Temperature = 1.5f },
        ];
        foreach (var options in configurations)
        {
            var sampler = new Sampler(options, vocab);
            // Steady state: the runtime itself may allocate while tiered JIT or on-stack replacement is still
            // recompiling the sampler (slow on a loaded machine), so a window of 100 calls must reach zero.
            long allocated = long.MaxValue;
            for (int attempt = 0; attempt < 30 && allocated != 0; attempt++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 100; i++) sampler.Sample(logits, recent);
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
            Assert.True(allocated == 0, $"{options} allocated {allocated} bytes over 100 calls");
        }
    }
}
