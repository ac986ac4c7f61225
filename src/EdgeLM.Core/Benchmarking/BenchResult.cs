using EdgeLM.Inference;

namespace EdgeLM.Benchmarking;

/// <summary>The timed repetitions of one test and the peak memory while it ran.</summary>
public sealed record BenchResult
{
    public required BenchTest Test { get; init; }
    public required KvCacheType KvCacheType { get; init; }
    /// <summary>Wall time of each timed repetition (warm-up excluded).</summary>
    public required long[] SamplesNs { get; init; }
    public required long PeakRssBytes { get; init; }
    /// <summary>True when the peak covers only this test (the high-water mark was reset before it).</summary>
    public required bool PeakRssIsPerTest { get; init; }
    /// <summary>
    /// Managed bytes allocated by the whole process during the timed repetitions (all of them together): the
    /// forward passes allocate nothing, so this stays at 0 unless something else in the process allocates meanwhile.
    /// </summary>
    public long AllocatedBytes { get; init; }
    /// <summary>tg tests: bytes each decoded token reads (weights and its share of the KV cache,
    /// <see cref="DecodeTraffic"/>); 0 for pp tests.</summary>
    public long DecodeBytesPerToken { get; init; }
    /// <summary>The memory read bandwidth measured at this test's thread count (<see cref="MemoryBandwidth"/>: the
    /// median pass), or 0 when it was not measured.</summary>
    public double ReadBandwidthBytesPerSecond { get; init; }
    /// <summary>When the test started, UTC.</summary>
    public required DateTimeOffset StartedAt { get; init; }

    public double[] SamplesTokensPerSecond => BenchStatistics.TokensPerSecond(SamplesNs, Test.Tokens);
    public double MeanTokensPerSecond => BenchStatistics.Mean(SamplesTokensPerSecond);
    public double StdDevTokensPerSecond => BenchStatistics.StdDev(SamplesTokensPerSecond);
    /// <summary>Bytes read per second while decoding over the measured read bandwidth (decode's distance from its
    /// memory-bound ceiling); 0 when either is unknown.</summary>
    public double BandwidthUse => DecodeBytesPerToken > 0 && ReadBandwidthBytesPerSecond > 0
        ? DecodeBytesPerToken * MeanTokensPerSecond / ReadBandwidthBytesPerSecond : 0;
    public double MeanNs => BenchStatistics.Mean(BenchStatistics.ToDoubles(SamplesNs));
    public double StdDevNs => BenchStatistics.StdDev(BenchStatistics.ToDoubles(SamplesNs));
}
