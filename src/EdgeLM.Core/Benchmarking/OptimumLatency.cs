namespace EdgeLM.Benchmarking;

/// <summary>
/// optimum-benchmark's Latency: the raw values in seconds and the statistics it derives from them with numpy's
/// defaults (np.percentile's linear interpolation, np.std's population standard deviation, ddof = 0).
/// </summary>
public sealed class OptimumLatency
{
    public const string Unit = "s";

    public IReadOnlyList<double> Values { get; }
    public int Count => Values.Count;
    public double Total { get; }
    public double Mean { get; }
    public double P50 { get; }
    public double P90 { get; }
    public double P95 { get; }
    public double P99 { get; }
    /// <summary>Population standard deviation; 0 for fewer than two values (as optimum-benchmark).</summary>
    public double Stdev { get; }
    /// <summary>Stdev as a percentage of |mean| (optimum-benchmark's stdev_).</summary>
    public double StdevPercent { get; }

    private OptimumLatency(double[] values)
    {
        Values = values;
        if (values.Length == 0) return; // numpy would give nan; JSON cannot carry it, so an empty series reports zeros
        double total = 0;
        foreach (double v in values) total += v;
        Total = total;
        Mean = total / values.Length;
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        P50 = Percentile(sorted, 50);
        P90 = Percentile(sorted, 90);
        P95 = Percentile(sorted, 95);
        P99 = Percentile(sorted, 99);
        if (values.Length > 1)
        {
            double squares = 0;
            foreach (double v in values) squares += (v - Mean) * (v - Mean);
            Stdev = Math.Sqrt(squares / values.Length);
            StdevPercent = Mean != 0 ? Stdev / Math.Abs(Mean) * 100 : 0;
        }
    }

    public static OptimumLatency FromValues(IEnumerable<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var array = values.ToArray();
        foreach (double v in array)
            if (!double.IsFinite(v) || v < 0) throw new ArgumentException($"latency {v} must be a finite non-negative number of seconds");
        return new OptimumLatency(array);
    }

    /// <summary>
    /// optimum-benchmark's Latency.__sub__: every value minus the other series' mean (decode = generate − mean prefill).
    /// It asserts the differences are non-negative; timing noise can make one slightly negative when the decode
    /// part is tiny, so those are clamped to 0 rather than failing the whole run.
    /// </summary>
    public OptimumLatency Minus(OptimumLatency other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new OptimumLatency(Values.Select(v => Math.Max(0, v - other.Mean)).ToArray());
    }

    /// <summary>numpy.percentile with its default 'linear' method over ascending values.</summary>
    public static double Percentile(IReadOnlyList<double> sortedAscending, double percent)
    {
        ArgumentNullException.ThrowIfNull(sortedAscending);
        if (sortedAscending.Count == 0) throw new ArgumentException("percentile of no values");
        if (!(percent >= 0 && percent <= 100)) throw new ArgumentOutOfRangeException(nameof(percent), $"percent {percent} must be within [0, 100]");
        double rank = percent / 100 * (sortedAscending.Count - 1);
        int below = (int)Math.Floor(rank);
        int above = Math.Min(below + 1, sortedAscending.Count - 1);
        double fraction = rank - below;
        return sortedAscending[below] + (sortedAscending[above] - sortedAscending[below]) * fraction;
    }
}
