namespace EdgeLM.Benchmarking;

/// <summary>
/// The statistics llama-bench reports, computed the same way so numbers can be compared side by side: tokens per
/// second per repetition (1e9 * tokens / ns), then the mean and the sample (n - 1) standard deviation of those rates,
/// not tokens over the mean time.
/// </summary>
public static class BenchStatistics
{
    /// <summary>Arithmetic mean; 0 for no values (llama-bench's avg).</summary>
    public static double Mean(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty) return 0;
        double sum = 0;
        foreach (double v in values) sum += v;
        return sum / values.Length;
    }

    /// <summary>
    /// Sample standard deviation with llama-bench's formula, sqrt(sum(x^2)/(n-1) - mean^2 * n/(n-1)); 0 for fewer
    /// than two values. Rounding can make the radicand slightly negative for identical values, where llama-bench
    /// would print nan: that is clamped to 0.
    /// </summary>
    public static double StdDev(ReadOnlySpan<double> values)
    {
        int n = values.Length;
        if (n <= 1) return 0;
        double mean = Mean(values), squares = 0;
        foreach (double v in values) squares += v * v;
        double variance = squares / (n - 1) - mean * mean * n / (n - 1);
        return Math.Sqrt(Math.Max(0, variance));
    }

    /// <summary>Tokens per second of each repetition: 1e9 * tokens / nanoseconds.</summary>
    public static double[] TokensPerSecond(ReadOnlySpan<long> samplesNs, int tokens)
    {
        var rates = new double[samplesNs.Length];
        for (int i = 0; i < rates.Length; i++)
        {
            if (samplesNs[i] <= 0) throw new ArgumentOutOfRangeException(nameof(samplesNs), $"sample {i} is {samplesNs[i]} ns; durations must be positive");
            rates[i] = 1e9 * tokens / samplesNs[i];
        }
        return rates;
    }

    public static double[] ToDoubles(ReadOnlySpan<long> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < result.Length; i++) result[i] = values[i];
        return result;
    }
}
