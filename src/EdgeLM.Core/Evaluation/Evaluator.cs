namespace EdgeLM.Evaluation;

/// <summary>One scored item: the requests as sent (context, continuation per choice) and their results.</summary>
public sealed record SampleResult(EvalDoc Doc, string Context, IReadOnlyList<string> Continuations, IReadOnlyList<Loglikelihood> Results,
    double Acc, double AccNorm);

public sealed record TaskResult(EvalTask Task, int NumFewShot, int OriginalCount, IReadOnlyList<SampleResult> Samples)
{
    public double Acc => Metrics.Mean(Samples.Select(s => s.Acc).ToArray());
    public double? AccStderr => Metrics.MeanStderr(Samples.Select(s => s.Acc).ToArray());
    public double AccNorm => Metrics.Mean(Samples.Select(s => s.AccNorm).ToArray());
    public double? AccNormStderr => Metrics.MeanStderr(Samples.Select(s => s.AccNorm).ToArray());
}

/// <summary>Builds each item's requests as lm-eval does and scores them.</summary>
public static class Evaluator
{
    /// <summary>lm-eval's --limit: below 1.0 a fraction of the split (rounded up), otherwise a count.</summary>
    public static int EffectiveCount(int total, double? limit)
    {
        if (limit is not double l) return total;
        if (!(l > 0) || double.IsInfinity(l)) throw new ArgumentException($"limit {l} must be a positive number");
        int n = l < 1.0 ? (int)Math.Ceiling(total * l) : (int)Math.Min(total, Math.Floor(l));
        return Math.Min(n, total);
    }

    /// <summary>The requests of one item: the shared context and target_delimiter + choice for every choice.</summary>
    public static (string Context, string[] Continuations) Requests(EvalDoc doc, string fewShotPrefix = "") =>
        (EvalTask.Context(doc, fewShotPrefix), doc.Choices.Select((_, i) => EvalTask.Continuation(doc, i)).ToArray());

    public static TaskResult Run(EvalTask task, IReadOnlyList<EvalDoc> docs, int originalCount, ILoglikelihoodScorer scorer,
        int numFewShot = 0, FewShotSampler? sampler = null, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        if (numFewShot < 0) throw new ArgumentOutOfRangeException(nameof(numFewShot), "few-shot count must not be negative");
        if (numFewShot > 0 && sampler is null) throw new ArgumentException("few-shot evaluation needs a sampler over the few-shot split");
        var samples = new List<SampleResult>(docs.Count);
        // A batch scorer gets several items per call; results and progress are still reported item by item.
        int chunk = scorer is IBatchLoglikelihoodScorer b ? Math.Max(1, b.ItemsPerBatch) : 1;
        var requests = new List<(string Context, IReadOnlyList<string> Continuations)>(chunk);
        for (int first = 0; first < docs.Count; first += chunk)
        {
            cancel.ThrowIfCancellationRequested();
            int count = Math.Min(chunk, docs.Count - first);
            requests.Clear();
            for (int i = first; i < first + count; i++)
            {
                string prefix = numFewShot > 0 ? sampler!.GetContext(docs[i], numFewShot) : "";
                var (context, continuations) = Requests(docs[i], prefix);
                requests.Add((context, continuations));
            }
            var batchResults = scorer is IBatchLoglikelihoodScorer batchScorer && count > 1
                ? batchScorer.ScoreBatch(requests)
                : [scorer.Score(requests[0].Context, requests[0].Continuations)];
            if (batchResults.Length != count)
                throw new InvalidOperationException($"scorer returned {batchResults.Length} items for {count}");
            for (int k = 0; k < count; k++)
            {
                var doc = docs[first + k];
                var (context, continuations) = requests[k];
                var results = batchResults[k];
                if (results.Length != continuations.Count)
                    throw new InvalidOperationException($"scorer returned {results.Length} results for {continuations.Count} requests");
                var (acc, accNorm) = Metrics.MultipleChoice(results.Select(r => r.LogLikelihood).ToArray(), doc.Choices, doc.Gold);
                samples.Add(new SampleResult(doc, context, continuations, results, acc, accNorm));
                progress?.Invoke(first + k + 1, docs.Count);
            }
        }
        return new TaskResult(task, numFewShot, originalCount, samples);
    }
}
