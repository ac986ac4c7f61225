using EdgeLM.Inference;

namespace EdgeLM.Tests.Sampling;

public class SamplerInternalsTests
{
    [Fact]
    public void Xoshiro256StarStarMatchesReferenceOutputs()
    {
        // First outputs of the reference C code (prng.di.unimi.it) from state {1, 2, 3, 4}.
        var rng = new Xoshiro256StarStar(1, 2, 3, 4);
        ulong[] expected = [11520, 0, 1509978240, 1215971899390074240, 1216172134540287360, 607988272756665600];
        Assert.Equal(expected, expected.Select(_ => rng.NextUInt64()).ToArray());
    }

    [Fact]
    public void SplitMix64MatchesReferenceOutputs()
    {
        ulong state = 0;
        ulong[] expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F];
        Assert.Equal(expected, expected.Select(_ => Xoshiro256StarStar.SplitMix64(ref state)).ToArray());
    }

    [Fact]
    public void NextDoubleIsInUnitInterval()
    {
        var rng = new Xoshiro256StarStar(77);
        double sum = 0;
        for (int i = 0; i < 10_000; i++)
        {
            double x = rng.NextDouble();
            Assert.InRange(x, 0.0, Math.BitDecrement(1.0));
            sum += x;
        }
        Assert.InRange(sum / 10_000, 0.49, 0.51);
    }

    [Fact]
    public void RankKeyOrdersByDescendingScoreThenAscendingToken()
    {
        float[] scores = [3f, -0f, 0f, float.MaxValue, -float.MaxValue, -1e-30f, 1e-30f, -2.5f, 3f, float.Epsilon];
        var byKey = Enumerable.Range(0, scores.Length).OrderBy(i => Sampler.RankKey(scores[i], i)).ToArray();
        var expected = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).ToArray();
        Assert.Equal(expected, byKey);
        Assert.All(Enumerable.Range(0, scores.Length), i => Assert.Equal(i, Sampler.TokenOf(Sampler.RankKey(scores[i], i))));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(10, 3)]
    [InlineData(1000, 40)]
    [InlineData(1000, 999)]
    [InlineData(5000, 1)]
    public void SelectSmallestPutsTheSmallestFirst(int length, int count)
    {
        var random = new Random(length * 31 + count);
        ulong[][] inputs =
        [
            Enumerable.Range(0, length).Select(_ => (ulong)random.NextInt64()).ToArray(),
            Enumerable.Range(0, length).Select(i => (ulong)i).ToArray(),
            Enumerable.Range(0, length).Select(i => (ulong)(length - i)).ToArray(),
            Enumerable.Range(0, length).Select(i => ((ulong)(i % 3) << 32) | (uint)i).ToArray(), // many equal high halves
        ];
        foreach (ulong[] input in inputs)
        {
            ulong[] values = (ulong[])input.Clone();
            Sampler.SelectSmallest(values, count);
            Assert.Equal(input.Order().Take(count), values.Take(count).Order());
            Assert.Equal(input.Order(), values.Order()); // a permutation
        }
    }
}
