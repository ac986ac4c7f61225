using System.Globalization;
using System.Text.Json;
using EdgeLM.Evaluation;
using EdgeLM.Tokenization;

namespace EdgeLM.Compression.Comparison;

/// <summary>How far a candidate (compressed) model's next-token distributions are from a reference's, over one text.</summary>
public sealed record ComparisonResult
{
    public required int Chunks { get; init; }
    public required int ScoredTokens { get; init; }
    public required double ReferencePerplexity { get; init; }
    public required double CandidatePerplexity { get; init; }
    /// <summary>KL(reference ‖ candidate) in nats per token.</summary>
    public required double KlMean { get; init; }
    public required double KlMeanStderr { get; init; }
    public required double KlMedian { get; init; }
    public required double KlP99 { get; init; }
    public required double KlMax { get; init; }
    /// <summary>Fraction of tokens where both models' most likely token is the same ("same top p").</summary>
    public required double SameTop { get; init; }
    public required double SameTopStderr { get; init; }

    public void WriteTable(TextWriter w)
    {
        var inv = CultureInfo.InvariantCulture;
        w.WriteLine(string.Create(inv, $"chunks: {Chunks}, scored tokens: {ScoredTokens}"));
        w.WriteLine(string.Create(inv, $"{"",-22}{"reference",14}{"candidate",14}"));
        w.WriteLine(string.Create(inv, $"{"perplexity",-22}{ReferencePerplexity,14:F4}{CandidatePerplexity,14:F4}"));
        w.WriteLine(string.Create(inv, $"{"ln(PPL(Q)/PPL(base))",-22}{Math.Log(CandidatePerplexity / ReferencePerplexity),28:F6}"));
        w.WriteLine(string.Create(inv, $"{"mean KLD",-22}{KlMean,28:F6} ± {KlMeanStderr:F6}"));
        w.WriteLine(string.Create(inv, $"{"median KLD",-22}{KlMedian,28:F6}"));
        w.WriteLine(string.Create(inv, $"{"99.0% KLD",-22}{KlP99,28:F6}"));
        w.WriteLine(string.Create(inv, $"{"maximum KLD",-22}{KlMax,28:F6}"));
        w.WriteLine(string.Create(inv, $"{"same top p",-22}{100 * SameTop,27:F3}% ± {100 * SameTopStderr:F3}%"));
    }

    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var j = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            j.WriteStartObject();
            j.WriteNumber("chunks", Chunks);
            j.WriteNumber("scored_tokens", ScoredTokens);
            j.WriteNumber("reference_ppl", ReferencePerplexity);
            j.WriteNumber("candidate_ppl", CandidatePerplexity);
            j.WriteNumber("kld_mean", KlMean);
            j.WriteNumber("kld_mean_stderr", KlMeanStderr);
            j.WriteNumber("kld_median", KlMedian);
            j.WriteNumber("kld_p99", KlP99);
            j.WriteNumber("kld_max", KlMax);
            j.WriteNumber("same_top", SameTop);
            j.WriteNumber("same_top_stderr", SameTopStderr);
            j.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}

/// <summary>
/// llama.cpp's perplexity --kl-divergence, with both models run side by side instead of through a saved logits file:
/// the tokens are cut into windows of ctx, each from an empty cache (first token replaced by BOS when the tokenizer
/// adds one), and only the second half of each window is scored, so every scored token has at least ctx/2 of context.
/// </summary>
public static class ModelComparison
{
    public static ComparisonResult Run(ILanguageModel reference, ILanguageModel candidate, ReadOnlySpan<int> tokens, int ctx, int? bosId,
        int maxChunks = -1, Action<int, int>? chunkDone = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        if (reference.VocabSize != candidate.VocabSize)
            throw new ArgumentException($"the models have different vocabularies ({reference.VocabSize} and {candidate.VocabSize} tokens); KL divergence needs the same tokenizer");
        if (ctx < 4) throw new ArgumentException($"context {ctx} is too small; use at least 4 tokens");
        if (ctx > Math.Min(reference.ContextLength, candidate.ContextLength))
            throw new ArgumentException($"context {ctx} exceeds a session's {Math.Min(reference.ContextLength, candidate.ContextLength)}");
        if (tokens.Length < 2 * ctx)
            throw new ArgumentException($"you need at least {2 * ctx} tokens to compare with a context of {ctx} (the text has {tokens.Length})");
        int chunks = tokens.Length / ctx;
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        int first = ctx / 2, vocab = reference.VocabSize;
        int piece = Math.Max(1, Math.Min(ctx - 1 - first, (1 << 21) / vocab));
        var refLogits = new float[(long)piece * vocab];
        var candLogits = new float[(long)piece * vocab];
        var refLogProbs = new double[vocab];
        var candLogProbs = new double[vocab];
        var window = new int[ctx];
        var kls = new List<double>(chunks * (ctx - 1 - first));
        double refNll = 0, candNll = 0;
        int sameTop = 0;
        for (int c = 0; c < chunks; c++)
        {
            cancel.ThrowIfCancellationRequested();
            tokens.Slice(c * ctx, ctx).CopyTo(window);
            if (bosId is int bos) window[0] = bos;
            foreach (var model in new[] { reference, candidate })
            {
                model.Truncate(0);
                model.Forward(window.AsSpan(0, first));
            }
            for (int pos = first; pos < ctx - 1; pos += piece)
            {
                int n = Math.Min(piece, ctx - 1 - pos);
                reference.ForwardAll(window.AsSpan(pos, n), refLogits);
                candidate.ForwardAll(window.AsSpan(pos, n), candLogits);
                for (int i = 0; i < n; i++)
                {
                    int refTop = LogSoftmaxAll(refLogits.AsSpan(i * vocab, vocab), refLogProbs);
                    int candTop = LogSoftmaxAll(candLogits.AsSpan(i * vocab, vocab), candLogProbs);
                    double kl = 0;
                    for (int t = 0; t < vocab; t++)
                        kl += Math.Exp(refLogProbs[t]) * (refLogProbs[t] - candLogProbs[t]);
                    // Rounding can leave an identical pair a hair below zero; KL is never negative.
                    kls.Add(Math.Max(0, kl));
                    if (refTop == candTop) sameTop++;
                    int next = window[pos + i + 1];
                    refNll -= refLogProbs[next];
                    candNll -= candLogProbs[next];
                }
            }
            chunkDone?.Invoke(c, chunks);
        }

        int count = kls.Count;
        double mean = kls.Average();
        double variance = kls.Sum(k => (k - mean) * (k - mean)) / Math.Max(1, count - 1);
        double p = (double)sameTop / count;
        var sorted = kls.Order().ToArray();
        return new ComparisonResult
        {
            Chunks = chunks,
            ScoredTokens = count,
            ReferencePerplexity = Math.Exp(refNll / count),
            CandidatePerplexity = Math.Exp(candNll / count),
            KlMean = mean,
            KlMeanStderr = Math.Sqrt(variance / count),
            KlMedian = Percentile(sorted, 0.5),
            KlP99 = Percentile(sorted, 0.99),
            KlMax = sorted[^1],
            SameTop = p,
            SameTopStderr = count > 1 ? Math.Sqrt(p * (1 - p) / (count - 1)) : 0,
        };
    }

    /// <summary>Linear interpolation between closest ranks (numpy's default).</summary>
    public static double Percentile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(at), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Log-probabilities of a logits row in double; returns the argmax (first on ties).</summary>
    private static int LogSoftmaxAll(ReadOnlySpan<float> logits, Span<double> logProbs)
    {
        int top = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[top]) top = i;
        double max = logits[top], sum = 0;
        for (int i = 0; i < logits.Length; i++) sum += Math.Exp(logits[i] - max);
        double logSum = Math.Log(sum);
        for (int i = 0; i < logits.Length; i++) logProbs[i] = logits[i] - max - logSum;
        return top;
    }

    /// <summary>Throws when two tokenizers do not map ids to the same tokens (KL over different vocabularies is meaningless).</summary>
    public static void CheckSameVocabulary(BpeTokenizer reference, BpeTokenizer candidate)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        if (reference.VocabSize != candidate.VocabSize)
            throw new ArgumentException($"the models have different vocabularies ({reference.VocabSize} and {candidate.VocabSize} tokens); KL divergence needs the same tokenizer");
        for (int id = 0; id < reference.VocabSize; id++)
            if (reference.TokenText(id) != candidate.TokenText(id))
                throw new ArgumentException($"the models have different tokenizers (token {id} is '{reference.TokenText(id)}' in one and '{candidate.TokenText(id)}' in the other)");
    }
}
