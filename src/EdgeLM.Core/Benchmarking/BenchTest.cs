namespace EdgeLM.Benchmarking;

/// <summary>
/// One llama-bench test: <c>pp N</c> processes N prompt tokens as one batch on an empty context; <c>tg N</c>
/// decodes N tokens one at a time, starting from an empty context. Each rate counts PromptTokens + GenTokens.
/// </summary>
public readonly record struct BenchTest(int PromptTokens, int GenTokens, int Threads)
{
    public int Tokens => PromptTokens + GenTokens;

    /// <summary>"pp512", "tg128" (or "pp512+tg128" for a combined test).</summary>
    public string Name => (PromptTokens, GenTokens) switch
    {
        ( > 0, > 0) => $"pp{PromptTokens}+tg{GenTokens}",
        ( > 0, _) => $"pp{PromptTokens}",
        _ => $"tg{GenTokens}",
    };

    /// <summary>
    /// Every combination in llama-bench's order: for each thread count, the prompt tests then the generation
    /// tests; a size of 0 is skipped.
    /// </summary>
    public static IReadOnlyList<BenchTest> Expand(IReadOnlyList<int> promptSizes, IReadOnlyList<int> genSizes, IReadOnlyList<int> threadCounts)
    {
        ArgumentNullException.ThrowIfNull(promptSizes);
        ArgumentNullException.ThrowIfNull(genSizes);
        ArgumentNullException.ThrowIfNull(threadCounts);
        if (promptSizes.Concat(genSizes).Any(n => n < 0)) throw new ArgumentOutOfRangeException(nameof(promptSizes), "token counts must not be negative");
        if (threadCounts.Any(t => t < 1)) throw new ArgumentOutOfRangeException(nameof(threadCounts), "thread counts must be at least 1");
        var tests = new List<BenchTest>();
        foreach (int threads in threadCounts)
        {
            foreach (int p in promptSizes) if (p > 0) tests.Add(new BenchTest(p, 0, threads));
            foreach (int g in genSizes) if (g > 0) tests.Add(new BenchTest(0, g, threads));
        }
        return tests;
    }
}
