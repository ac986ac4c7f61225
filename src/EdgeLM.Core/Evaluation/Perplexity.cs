using System.Globalization;

namespace EdgeLM.Evaluation;

public sealed record PerplexityResult(int Chunks, int ScoredTokens, double Ppl, double? PplStderr, IReadOnlyList<double> RunningPpl);

/// <summary>
/// llama.cpp's perplexity (tools/perplexity/perplexity.cpp): the text is cut into non-overlapping windows of ctx
/// tokens; each window starts from an empty cache, its first token replaced by BOS when the tokenizer adds BOS; only
/// the second half is scored (ctx - 1 - ctx/2 predictions a window, so every scored token has at least ctx/2 tokens
/// of context). The ± is llama.cpp's: sqrt((E[nll²] - E[nll]²) / (count - 1)) × PPL.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Run(ILanguageModel model, ReadOnlySpan<int> tokens, int ctx, int? bosId, int batch = 512,
        Action<int, double>? chunkDone = null, int maxChunks = -1, CancellationToken cancel = default)
    {
        if (ctx < 4) throw new ArgumentException($"context {ctx} is too small; use at least 4 tokens");
        if (ctx > model.ContextLength) throw new ArgumentException($"context {ctx} exceeds the session's {model.ContextLength}");
        if (tokens.Length < 2 * ctx)
            throw new ArgumentException($"you need at least {2 * ctx} tokens to evaluate perplexity with a context of {ctx} (the text has {tokens.Length})");
        if (batch < 1) throw new ArgumentException("batch must be positive");
        int chunks = tokens.Length / ctx;
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        int first = ctx / 2;
        int vocab = model.VocabSize;
        // Logits are needed for the second half only; compute them a piece at a time to bound memory.
        int piece = Math.Min(Math.Min(batch, 128), ctx - 1 - first);
        var logits = new float[(long)piece * vocab];
        var window = new int[ctx];
        double nll = 0, nll2 = 0;
        int count = 0;
        var running = new List<double>(chunks);
        for (int c = 0; c < chunks; c++)
        {
            cancel.ThrowIfCancellationRequested();
            tokens.Slice(c * ctx, ctx).CopyTo(window);
            if (bosId is int bos) window[0] = bos;
            model.Truncate(0);
            // Positions 0..first-1 only fill the cache.
            for (int done = 0; done < first; done += batch) model.Forward(window.AsSpan(done, Math.Min(batch, first - done)));
            // Positions first..ctx-2 predict tokens first+1..ctx-1.
            for (int pos = first; pos < ctx - 1; pos += piece)
            {
                int n = Math.Min(piece, ctx - 1 - pos);
                model.ForwardAll(window.AsSpan(pos, n), logits);
                for (int i = 0; i < n; i++)
                {
                    double v = -LogSoftmax.Of(logits.AsSpan(i * vocab, vocab), window[pos + i + 1]).LogProb;
                    nll += v;
                    nll2 += v * v;
                }
            }
            count += ctx - 1 - first;
            double ppl = Math.Exp(nll / count);
            running.Add(ppl);
            chunkDone?.Invoke(c, ppl);
        }
        double meanNll = nll / count, meanNll2 = nll2 / count;
        double finalPpl = Math.Exp(meanNll);
        double variance = meanNll2 - meanNll * meanNll;
        double? stderr = variance > 0 ? Math.Sqrt(variance / (count - 1)) * finalPpl : null;
        return new PerplexityResult(chunks, count, finalPpl, stderr, running);
    }

    /// <summary>llama.cpp's closing line.</summary>
    public static string FinalLine(PerplexityResult r) => r.PplStderr is double e
        ? string.Create(CultureInfo.InvariantCulture, $"Final estimate: PPL = {r.Ppl:F4} +/- {e:F5}")
        : "Unexpected negative standard deviation of log(prob)";
}
