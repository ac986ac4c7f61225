using System.Diagnostics;
using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Benchmarking;

public sealed record BenchOptions
{
    /// <summary>Timed repetitions per test (llama-bench's -r, default 5).</summary>
    public int Repetitions { get; init; } = 5;
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F32;
    /// <summary>Seed of the random token ids, so every run feeds the same tokens.</summary>
    public ulong Seed { get; init; } = 1234;
    /// <summary>One untimed run before the repetitions (llama-bench: the whole prompt for pp, one token for tg).</summary>
    public bool Warmup { get; init; } = true;
    /// <summary>When set, the timed repetitions (not the warm-up) are timed per part into this profile.</summary>
    public SessionProfile? Profile { get; init; }

    public void Validate()
    {
        if (Repetitions < 1) throw new ArgumentOutOfRangeException(nameof(Repetitions), $"repetitions must be at least 1, got {Repetitions}");
    }
}

/// <summary>
/// Runs llama-bench's tests against EdgeLM's engine with the same protocol: a fresh session sized to the test, a
/// warm-up, then per repetition an emptied context and the timed work (prompt: one batch, logits of the last token
/// only; generation: single-token steps from an empty context, the first token BOS when the model adds one).
/// </summary>
public static class BenchRunner
{
    public static BenchResult Run(LoadedModel model, BenchTest test, BenchOptions options, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (test.Tokens <= 0) throw new ArgumentException($"test {test.Name} has no tokens");
        if (test.Threads < 1) throw new ArgumentException($"thread count {test.Threads} must be at least 1");
        var config = model.Config;
        if (test.Tokens > config.ContextLength)
            throw new ArgumentException($"{test.Name} needs {test.Tokens} tokens of context, the model has {config.ContextLength}");

        var started = DateTimeOffset.UtcNow;
        // The previous test's session is gone; its buffers must not count here (llama-bench frees its context
        // deterministically between tests).
        GC.Collect();
        GC.WaitForPendingFinalizers();
        // Reset before the session exists so its buffers and KV cache count towards this test's peak.
        bool perTest = PeakRss.TryReset();
        // Like llama-bench's context: exactly as many positions as the test uses; decoding needs a batch of one.
        int batch = test.PromptTokens > 0 ? InferenceSession.DefaultBatchSize : 1;
        using var session = new InferenceSession(config, model.Weights, test.Tokens, test.Threads, options.KvCacheType, batch);

        // Seeded by the test's sizes, not its thread count, so 1 and 2 threads process the same tokens.
        var rng = new Random(unchecked((int)options.Seed * 31 + (int)(options.Seed >> 32) * 7 + test.PromptTokens * 131 + test.GenTokens * 65537));
        int? bos = model.Metadata.GetBool("tokenizer.ggml.add_bos_token") == true ? config.BosTokenId : null;
        var prompt = new int[test.PromptTokens];
        var generated = new int[test.GenTokens];

        if (options.Warmup)
        {
            FillTokens(prompt, generated, rng, config.VocabSize, bos);
            if (test.PromptTokens > 0) session.Forward(prompt);
            if (test.GenTokens > 0) session.Forward(generated.AsSpan(0, 1));
        }

        session.Profile = options.Profile;
        var samples = new long[options.Repetitions];
        long allocated = 0;
        for (int rep = 0; rep < samples.Length; rep++)
        {
            cancel.ThrowIfCancellationRequested();
            session.Reset();
            FillTokens(prompt, generated, rng, config.VocabSize, bos);
            // All threads (the pool's workers too), read outside the timed region: the precise count synchronizes.
            long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            long start = Stopwatch.GetTimestamp();
            if (test.PromptTokens > 0) session.Forward(prompt);
            for (int i = 0; i < generated.Length; i++) session.Forward(generated.AsSpan(i, 1));
            long elapsed = Stopwatch.GetTimestamp() - start;
            allocated += GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            samples[rep] = Math.Max(1, (long)(elapsed * (1e9 / Stopwatch.Frequency)));
        }

        return new BenchResult
        {
            Test = test,
            KvCacheType = options.KvCacheType,
            SamplesNs = samples,
            PeakRssBytes = PeakRss.Read(),
            PeakRssIsPerTest = perTest,
            AllocatedBytes = allocated,
            DecodeBytesPerToken = test.PromptTokens == 0
                ? DecodeTraffic.WeightBytesPerToken(model.Weights) + DecodeTraffic.KvBytesPerToken(config, options.KvCacheType, test.GenTokens)
                : 0,
            StartedAt = started,
        };
    }

    // Drawn outside the timed region (llama-bench draws inside it; rand() costs nothing next to a forward pass).
    private static void FillTokens(int[] prompt, int[] generated, Random rng, int vocab, int? bos)
    {
        for (int i = 0; i < prompt.Length; i++) prompt[i] = rng.Next(vocab);
        for (int i = 0; i < generated.Length; i++) generated[i] = rng.Next(vocab);
        if (bos is int b && b < vocab)
        {
            if (prompt.Length > 0) prompt[0] = b;
            if (generated.Length > 0) generated[0] = b;
        }
    }
}
