using EdgeLM.Benchmarking;

namespace EdgeLM.Tests.Benchmarking;

public class BenchStatisticsTests
{
    [Fact]
    public void TokensPerSecondIsTokensOverEachSampleNotOverTheMeanTime()
    {
        // 512 tokens in 2 s and in 1 s: 256 and 512 t/s. Their mean is 384; 512 tokens over the mean 1.5 s would be 341.33.
        var rates = BenchStatistics.TokensPerSecond([2_000_000_000, 1_000_000_000], 512);
        Assert.Equal([256.0, 512.0], rates);
        Assert.Equal(384.0, BenchStatistics.Mean(rates), 9);
    }

    [Fact]
    public void StdDevIsTheSampleStandardDeviation()
    {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, 32 / 7 -> sqrt = 2.138089935...
        double[] values = [2, 4, 4, 4, 5, 5, 7, 9];
        Assert.Equal(5.0, BenchStatistics.Mean(values), 12);
        Assert.Equal(Math.Sqrt(32.0 / 7.0), BenchStatistics.StdDev(values), 10);
    }

    [Fact]
    public void StdDevMatchesTwoPassFormulaOnIrregularSamples()
    {
        double[] values = [31.98, 37.19, 35.02, 29.7, 41.5];
        double mean = values.Sum() / values.Length;
        double twoPass = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1));
        Assert.Equal(twoPass, BenchStatistics.StdDev(values), 9);
    }

    [Fact]
    public void DegenerateInputsGiveZeroNotNaN()
    {
        Assert.Equal(0, BenchStatistics.Mean([]));
        Assert.Equal(0, BenchStatistics.StdDev([]));
        Assert.Equal(0, BenchStatistics.StdDev([42.0]));
        // Identical values: llama-bench's one-pass formula can go slightly negative under the root.
        double sd = BenchStatistics.StdDev([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
        Assert.False(double.IsNaN(sd));
        Assert.True(sd < 1e-6);
    }

    [Fact]
    public void NonPositiveDurationsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BenchStatistics.TokensPerSecond([100, 0], 4));
    }

    [Fact]
    public void TestsExpandInLlamaBenchOrderAndSkipZeros()
    {
        var tests = BenchTest.Expand([512, 0, 128], [0, 32], [1, 2]);
        Assert.Equal(["pp512", "pp128", "tg32", "pp512", "pp128", "tg32"], tests.Select(t => t.Name));
        Assert.Equal([1, 1, 1, 2, 2, 2], tests.Select(t => t.Threads));
        Assert.Equal(32, tests[2].Tokens);
        Assert.Empty(BenchTest.Expand([0], [0], [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => BenchTest.Expand([1], [1], [0]));
        Assert.Equal("pp16+tg4", new BenchTest(16, 4, 1).Name);
    }
}
