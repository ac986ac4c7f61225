using System.Diagnostics;
using System.Globalization;
using EdgeLM.Evaluation;
using EdgeLM.Formats;
using EdgeLM.Inference;

namespace EdgeLM.Cli.Commands;

internal sealed class EvalCommand : Command
{
    public override string Name => "eval";
    public override string Summary => "multiple-choice accuracy as lm-evaluation-harness computes it (arc_challenge, arc_easy, hellaswag, piqa)";
    public override string Usage => "edgelm eval -m MODEL --tasks arc_challenge,piqa [--data DIR] [--limit N] [--num-fewshot K] [-o results.json] [--log-samples FILE]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--tasks", null, "LIST", "comma-separated tasks: " + string.Join(", ", EvalTask.Names)),
        new("--data", null, "DIR", "dataset folder: DIR/<task>/<file> (arc: test.jsonl, piqa: valid.jsonl + valid-labels.lst, hellaswag: hellaswag_val.jsonl)", "../shared/datasets beside the repository"),
        new("--download", null, null, $"fetch missing splits from the Hugging Face datasets-server (${DatasetDownloader.EndpointVariable} overrides the server) into --data or ~/.cache/edgelm/datasets"),
        new("--limit", null, "N", "evaluate the first N items (a value below 1 is a fraction of the split, as lm-eval)"),
        new("--num-fewshot", null, "K", "few-shot examples from the training split (DIR/<task>/train.jsonl ...), drawn like lm-eval's sampler with seed 1234", "0"),
        new("--output", "-o", "FILE", "write results.json in lm-evaluation-harness's layout"),
        new("--log-samples", null, "FILE", "write one JSON line per item (requests, log-likelihoods, acc, acc_norm)"),
        new("--batch", null, "N", "items scored together: their contexts prefill in one pass, then all their continuations in one pass (same log-likelihoods, bitwise); 0: one request at a time on a single sequence", BatchedModelScorer.DefaultItemsPerBatch.ToString(CultureInfo.InvariantCulture)),
        ModelOptions.Threads, ModelOptions.Context, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        var names = (a.Get("--tasks") ?? throw new UsageException("give --tasks, e.g. --tasks arc_challenge,piqa"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0) throw new UsageException("--tasks lists no task");
        EvalTask[] tasks;
        try { tasks = names.Distinct().Select(EvalTask.Get).ToArray(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        double? limit = null;
        if (a.Get("--limit") is { } ls)
        {
            if (!double.TryParse(ls, NumberStyles.Float, CultureInfo.InvariantCulture, out double l) || !(l > 0) || double.IsInfinity(l))
                throw new UsageException($"--limit expects a positive number, got '{ls}'");
            limit = l;
        }
        int fewShot = a.Int("--num-fewshot", 0, 0, 100);
        string? output = a.Get("--output"), samplesPath = a.Get("--log-samples");

        var dataDirs = DataDirectories(a.Get("--data"));
        string downloadDir = a.Get("--data") ?? DefaultCacheDir();
        var loaded = new List<(EvalTask Task, List<EvalDoc> Docs, List<EvalDoc>? FewShot)>();
        foreach (var task in tasks)
        {
            var docs = LoadSplit(task, task.EvalSplit, dataDirs, downloadDir, a.Flag("--download"), cancel);
            var few = fewShot > 0 ? LoadSplit(task, task.FewShotSplit, dataDirs, downloadDir, a.Flag("--download"), cancel) : null;
            loaded.Add((task, docs, few));
        }

        using var model = ModelOptions.Load(a);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        int ctx = a.Int("--ctx", Math.Min(model.Config.ContextLength, InferenceSession.DefaultMaxContext), 16, model.Config.ContextLength);
        int batchItems = a.Int("--batch", BatchedModelScorer.DefaultItemsPerBatch, 0, 1024);
        var encode = RequestEncoding.TokenizerEncoder(tokenizer);
        int prefixTokenId = RequestEncoding.PrefixTokenId(tokenizer);
        using var session = batchItems == 0 ? new InferenceSession(model.Config, model.Weights, ctx, ModelOptions.ThreadCount(a)) : null;
        using var batched = batchItems == 0 ? null
            : new BatchedModelScorer(model.Config, model.Weights, encode, prefixTokenId, ctx, ModelOptions.ThreadCount(a), batchItems);
        ILoglikelihoodScorer scorer = session != null ? new ModelScorer(new SessionLanguageModel(session), encode, prefixTokenId) : batched!;

        var results = new List<TaskResult>();
        foreach (var (task, docs, few) in loaded)
        {
            int n = Evaluator.EffectiveCount(docs.Count, limit);
            var sampler = few is null ? null : new FewShotSampler(few, sameSplitAsEval: false);
            var progress = new ProgressBar(task.Name, Console.Error);
            var result = Evaluator.Run(task, docs.GetRange(0, n), docs.Count, scorer, fewShot, sampler, progress.Report, cancel);
            progress.Finish();
            results.Add(result);
        }

        PrintTable(results, Console.Out);
        var info = new EvalReport.RunInfo(model.SourcePath, $"pretrained={model.SourcePath}", limit, Program.Version, DateTimeOffset.Now, fewShot);
        if (output != null)
        {
            AtomicFile.Write(output, s => EvalReport.WriteResults(s, results, info));
            Console.Error.WriteLine($"wrote {output}");
        }
        if (samplesPath != null)
        {
            AtomicFile.Write(samplesPath, s => { foreach (var r in results) EvalReport.WriteSamples(s, r); });
            Console.Error.WriteLine($"wrote {samplesPath}");
        }
        return 0;
    }

    private static List<EvalDoc> LoadSplit(EvalTask task, SplitSource split, IReadOnlyList<string> dataDirs, string downloadDir, bool download, CancellationToken cancel)
    {
        foreach (var dir in dataDirs)
            if (TaskDataset.Exists(dir, task, split)) return TaskDataset.Load(dir, task, split);
        if (!download)
        {
            string expected = TaskDataset.PathOf(dataDirs[0], task, split);
            throw new FileNotFoundException($"{task.Name}: {split.Split} split not found: {expected}" +
                                            (split.LabelsFileName != null ? $" (+ {split.LabelsFileName})" : "") + "; pass --data DIR or --download");
        }
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        var downloader = new DatasetDownloader(http);
        Console.Error.WriteLine($"{task.Name}: downloading {split.HfDataset} {split.HfConfig}/{split.HfSplit} from {downloader.Endpoint} to {downloadDir}");
        int rows = downloader.DownloadAsync(downloadDir, task, split,
            (done, total) => Console.Error.Write($"\r  {done}/{total} rows"), cancel).GetAwaiter().GetResult();
        Console.Error.WriteLine($"\r  {rows} rows cached");
        return TaskDataset.Load(downloadDir, task, split);
    }

    /// <summary>--data, else ../shared/datasets beside the repository, then the download cache.</summary>
    internal static IReadOnlyList<string> DataDirectories(string? explicitDir)
    {
        if (explicitDir != null) return [explicitDir];
        var dirs = new List<string>();
        if (Locations.Datasets is { } shared) dirs.Add(shared);
        dirs.Add(DefaultCacheDir());
        return dirs;
    }

    private static string DefaultCacheDir() => Path.Combine(Locations.CacheFolder, "datasets");

    internal static void PrintTable(IReadOnlyList<TaskResult> results, TextWriter w)
    {
        w.WriteLine("|    Tasks    |Version|n-shot| Metric |Value |   |Stderr|");
        w.WriteLine("|-------------|------:|-----:|--------|-----:|---|-----:|");
        foreach (var r in results)
        {
            string v = r.Task.Version.ToString("0.0", CultureInfo.InvariantCulture);
            w.WriteLine(Row(r.Task.Name, v, r.NumFewShot.ToString(CultureInfo.InvariantCulture), "acc", r.Acc, r.AccStderr));
            w.WriteLine(Row("", "", "", "acc_norm", r.AccNorm, r.AccNormStderr));
        }
    }

    private static string Row(string task, string version, string shots, string metric, double value, double? stderr) =>
        string.Create(CultureInfo.InvariantCulture,
            $"|{task,-13}|{version,7}|{shots,6}|{metric,-8}|{value,6:F4}|±  |{(stderr is double s ? s.ToString("F4", CultureInfo.InvariantCulture) : "N/A"),6}|");
}

/// <summary>A one-line progress bar on standard error: items, items/s and time left.</summary>
internal sealed class ProgressBar(string label, TextWriter err)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastDrawMs = -1000;
    private int _done, _total;

    public void Report(int done, int total)
    {
        _done = done;
        _total = total;
        long now = _clock.ElapsedMilliseconds;
        // Redirected output gets a line every few seconds instead of carriage-return redraws.
        int interval = Console.IsErrorRedirected ? 5000 : 250;
        if (now - _lastDrawMs < interval && done < total) return;
        _lastDrawMs = now;
        err.Write((Console.IsErrorRedirected ? "" : "\r") + Line() + (Console.IsErrorRedirected ? "\n" : ""));
    }

    public void Finish()
    {
        if (!Console.IsErrorRedirected) err.WriteLine();
    }

    private string Line()
    {
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        double rate = _done / seconds;
        double eta = rate > 0 ? (_total - _done) / rate : 0;
        int width = 24, filled = _total == 0 ? width : (int)((long)width * _done / _total);
        return string.Create(CultureInfo.InvariantCulture,
            $"{label} [{new string('#', filled)}{new string('.', width - filled)}] {_done}/{_total} {rate:F2} it/s ETA {TimeSpan.FromSeconds(Math.Round(eta)):hh\\:mm\\:ss}  ");
    }
}
