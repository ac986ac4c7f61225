using EdgeLM.Compression.Pruning;
using System.Diagnostics;
using System.Globalization;
using EdgeLM.Benchmarking;
using EdgeLM.Compression;
using EdgeLM.Evaluation;
using EdgeLM.Formats;
using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Pipeline;

/// <summary>
/// The challenge end to end: from an original-precision model build the candidates (the baseline itself and one
/// per quantization type), bench each with optimum-benchmark's scenario, evaluate each on the tasks whose data is
/// there, score them with the AICAS formula against the baseline, then write report.json and report.html.
/// </summary>
public static class PipelineRunner
{
    public const string PrunedSkippedNote = "pruned variant: skipped";
    public const string NoDataNote = "accuracy: skipped, no data";

    /// <summary>Chance accuracy is the fallback P_min; when a model scores at chance (random weights) P_min is P_max minus this.</summary>
    public const double FallbackPMinMargin = 0.1;

    public static PipelineResult Run(PipelineOptions options, Action<string>? log = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        log ??= _ => { };
        var clock = Stopwatch.StartNew();
        var started = DateTimeOffset.Now;
        if (!File.Exists(options.BaseModelPath) && !Directory.Exists(options.BaseModelPath))
            throw new FileNotFoundException($"base model not found: {options.BaseModelPath}", options.BaseModelPath);
        Directory.CreateDirectory(options.OutputDir);
        Directory.CreateDirectory(options.WorkDir);
        var notes = new List<string>();
        void Note(string line) { notes.Add(line); log(line); }

        // Data first: a missing file is known before minutes of quantizing.
        var datasets = new List<(EvalTask Task, List<EvalDoc>? Docs, int Original)>();
        foreach (var name in options.Tasks.Distinct())
        {
            var task = EvalTask.Get(name);
            string? dir = options.DataDirs.FirstOrDefault(d => TaskDataset.Exists(d, task, task.EvalSplit));
            if (dir == null)
            {
                Note($"{task.Name}: {NoDataNote} (looked for {task.Name}/{task.EvalSplit.FileName} in {(options.DataDirs.Count == 0 ? "no folder" : string.Join(", ", options.DataDirs))})");
                datasets.Add((task, null, 0));
                continue;
            }
            var docs = TaskDataset.Load(dir, task, task.EvalSplit);
            int n = Evaluator.EffectiveCount(docs.Count, options.Limit);
            log($"{task.Name}: {n} of {docs.Count} items from {Path.Combine(dir, task.Name)}");
            datasets.Add((task, docs.GetRange(0, n), docs.Count));
        }

        var models = new List<(string Name, string Kind, string Path)> { ("baseline", "baseline", options.BaseModelPath) };
        foreach (var type in options.QuantTypes)
        {
            cancel.ThrowIfCancellationRequested();
            string name = LlamaFileTypes.Name(type);
            try { models.Add((name, "quantized", Quantized(options, type, name, log, cancel))); }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException or ArgumentException)
            {
                Note($"{name}: skipped, {e.Message}");
            }
        }
        try
        {
            if (Pruned(options, datasets.SelectMany(d => d.Docs ?? []), log, Note, cancel) is { } pruned)
                models.Add((pruned.Name, "pruned", pruned.Path));
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or ArgumentException)
        {
            Note($"{PrunedSkippedNote}, {e.Message}");
        }

        var results = new List<CandidateResult>();
        for (int i = 0; i < models.Count; i++)
        {
            var (name, kind, path) = models[i];
            cancel.ThrowIfCancellationRequested();
            log($"[{i + 1}/{models.Count}] {name}: bench (optimum scenario, batch {options.Bench.BatchSize}, sequence {options.Bench.SequenceLength}, {options.Bench.NewTokens} new tokens)");
            var bench = OptimumBenchmark.Run(path, () => ModelLoader.Load(path), options.Bench, options.GeneratorFactory,
                phase => log($"    {phase}"), cancel);
            log(string.Create(CultureInfo.InvariantCulture,
                $"    prefill {bench.PrefillTokensPerSecond:F1} tokens/s, decode {bench.DecodeTokensPerSecond:F2} tokens/s, peak {bench.PeakMemoryBytes / 1e6:F0} MB"));

            using var model = ModelLoader.Load(path);
            var info = BenchModelInfo.From(model);
            long elements = model.Tensors.Values.Sum(t => t.ElementCount);
            long bytes = model.Tensors.Values.Sum(t => t.ByteLength);
            var tasks = Evaluate(options, model, name, datasets, log, cancel);
            results.Add(new CandidateResult
            {
                Name = name,
                Kind = kind,
                ModelPath = Path.GetFullPath(path),
                TypeName = info.TypeName,
                FileBytes = model.FileBytes,
                ParameterCount = elements,
                BitsPerWeight = 8.0 * bytes / Math.Max(1, elements),
                Bench = bench,
                Tasks = tasks,
            });
        }

        var scored = Score(options, results, Note);
        var result = new PipelineResult
        {
            Options = options,
            Candidates = scored.Candidates,
            Notes = notes,
            PMax = scored.PMax,
            PMin = scored.PMin,
            PMaxSource = scored.PMaxSource,
            PMinSource = scored.PMinSource,
            StartedAt = started,
            Elapsed = clock.Elapsed,
        };
        cancel.ThrowIfCancellationRequested();
        // Each file is replaced atomically; report.json last, so its presence means the run completed.
        AtomicFile.Write(Path.Combine(options.OutputDir, "report.html"), s => PipelineHtml.Write(s, result));
        AtomicFile.Write(Path.Combine(options.OutputDir, "report.json"), s => PipelineJson.Write(s, result));
        return result;
    }

    /// <summary>The quantized file for a type, reused when an earlier run made it from the same base file.</summary>
    private static string Quantized(PipelineOptions options, LlamaFileType type, string name, Action<string> log, CancellationToken cancel)
    {
        string stamp = Stamp(options);
        string stem = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(options.BaseModelPath));
        string path = Path.Combine(options.WorkDir, $"{stem}-{stamp}-{name}.gguf");
        if (File.Exists(path))
        {
            log($"{name}: using {path}");
            return path;
        }
        log($"{name}: quantizing to {path}");
        using var model = ModelLoader.Load(options.BaseModelPath);
        int lastDecile = -1;
        var progress = new Progress(p =>
        {
            int decile = (int)(p.Fraction * 10);
            if (decile > lastDecile) { lastDecile = decile; if (decile is > 0 and < 10) log($"    {decile * 10}%"); }
        });
        var report = ModelQuantizer.Quantize(model, path, new QuantizeOptions { FileType = type, Threads = options.Threads }, progress, cancel);
        log(string.Create(CultureInfo.InvariantCulture, $"    {report.OutputFileBytes / 1e6:F0} MB, {report.BitsPerWeight:F2} bits/weight, {report.Elapsed.TotalSeconds:F0} s"));
        return path;
    }

    /// <summary>
    /// The "pruned + 4-bit" candidate: ShortGPT drops the blocks with the least influence, measured on calibration
    /// text made of the evaluation items' own questions (the only text the pipeline is sure to have), then q4_k_m.
    /// </summary>
    private static (string Name, string Path)? Pruned(PipelineOptions options, IEnumerable<EvalDoc> docs, Action<string> log,
        Action<string> note, CancellationToken cancel)
    {
        using var model = ModelLoader.Load(options.BaseModelPath);
        int layers = model.Config.LayerCount;
        int remove = options.PruneBlocks ?? (layers >= 4 ? Math.Max(1, layers / 8) : 0);
        if (remove <= 0) { note($"{PrunedSkippedNote}: {(options.PruneBlocks == 0 ? "turned off" : $"only {layers} blocks")}"); return null; }
        if (remove >= layers) throw new ArgumentException($"cannot prune {remove} of {layers} blocks");
        var tokenizer = ModelTokenizers.Load(model);
        if (tokenizer == null) { note($"{PrunedSkippedNote}: the model has no tokenizer for calibration text"); return null; }

        string text = string.Join("\n", docs.Select(d => d.Query + " " + string.Join(" ", d.Choices)));
        if (text.Length < 200) text += "\n" + FallbackCalibrationText;
        int[] tokens = tokenizer.Encode(text);
        int context = Math.Min(256, Math.Min(model.Config.ContextLength, tokens.Length));
        tokens = tokens[..Math.Min(tokens.Length, 4 * context)];
        string name = $"pruned{remove}+q4_k_m";
        string prunedPath = Path.Combine(options.WorkDir, $"{Path.GetFileNameWithoutExtension(options.BaseModelPath)}-{Stamp(options)}-pruned{remove}.gguf");
        if (!File.Exists(prunedPath))
        {
            log($"{name}: ShortGPT block influence over {tokens.Length} calibration tokens");
            var selection = LayerPruner.Select(model.Config, model.Tensors, tokens,
                new PruneOptions { Method = PruneMethod.ShortGpt, RemoveCount = remove, Context = context, Threads = options.Threads }, null, cancel);
            log($"    removing blocks {string.Join(", ", selection.Removed)}");
            LayerPruner.Write(model, selection.Removed, prunedPath, folder: false);
        }
        return (name, Quantized(options with { BaseModelPath = prunedPath }, LlamaFileType.MostlyQ4_K_M, name, log, cancel));
    }

    private const string FallbackCalibrationText =
        "The committee met on Tuesday to review the budget. After a long discussion, the members agreed to postpone " +
        "the decision until more data was available. Meanwhile, the engineers measured how fast the new model ran " +
        "on an ordinary processor, and whether its answers were still correct after compression.";

    private static string Stamp(PipelineOptions options)
    {
        var source = new FileInfo(options.BaseModelPath);
        return source.Exists
            ? string.Create(CultureInfo.InvariantCulture, $"{source.Length:x}-{source.LastWriteTimeUtc.Ticks:x}")
            : Directory.GetLastWriteTimeUtc(options.BaseModelPath).Ticks.ToString("x", CultureInfo.InvariantCulture);
    }

    private sealed class Progress(Action<QuantizeProgress> report) : IProgress<QuantizeProgress>
    {
        public void Report(QuantizeProgress value) => report(value);
    }

    private static List<TaskOutcome> Evaluate(PipelineOptions options, LoadedModel model, string name,
        List<(EvalTask Task, List<EvalDoc>? Docs, int Original)> datasets, Action<string> log, CancellationToken cancel)
    {
        var outcomes = new List<TaskOutcome>();
        if (datasets.All(d => d.Docs == null))
        {
            foreach (var (task, _, _) in datasets) outcomes.Add(new TaskOutcome(task.Name, 0, null, null, null, null, NoDataNote));
            return outcomes;
        }
        var tokenizer = ModelTokenizers.Require(model, options.TokenizerPath);
        int ctx = Math.Min(model.Config.ContextLength, options.EvalContext);
        using var session = new InferenceSession(model.Config, model.Weights, ctx, options.Threads);
        var scorer = new ModelScorer(new SessionLanguageModel(session), RequestEncoding.TokenizerEncoder(tokenizer), RequestEncoding.PrefixTokenId(tokenizer));
        foreach (var (task, docs, original) in datasets)
        {
            if (docs == null)
            {
                log($"    {task.Name}: {NoDataNote}");
                outcomes.Add(new TaskOutcome(task.Name, 0, null, null, null, null, NoDataNote));
                continue;
            }
            var clock = Stopwatch.StartNew();
            long lastLog = 0;
            void Progress(int done, int total)
            {
                if (clock.ElapsedMilliseconds - lastLog < 10_000 && done < total) return;
                lastLog = clock.ElapsedMilliseconds;
                double rate = done / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                log(string.Create(CultureInfo.InvariantCulture, $"    {task.Name}: {done}/{total} items, {rate:F2} it/s"));
            }
            var r = Evaluator.Run(task, docs, original, scorer, progress: Progress, cancel: cancel);
            log(string.Create(CultureInfo.InvariantCulture,
                $"    {task.Name}: acc {r.Acc:F4} ± {r.AccStderr ?? 0:F4}, acc_norm {r.AccNorm:F4} ± {r.AccNormStderr ?? 0:F4} ({docs.Count} items)"));
            outcomes.Add(new TaskOutcome(task.Name, docs.Count, r.Acc, r.AccStderr, r.AccNorm, r.AccNormStderr, null));
        }
        return outcomes;
    }

    /// <summary>
    /// P_max: --p-max, else the baseline's average accuracy (the original model, as the challenge uses
    /// Qwen2.5-0.5B's). P_min: --p-min, else the chance level of the evaluated items (mean of 1/choices per task,
    /// averaged over tasks), moved to P_max − 0.1 when that is not below P_max.
    /// </summary>
    internal static (IReadOnlyList<CandidateResult> Candidates, double? PMax, double? PMin, string? PMaxSource, string? PMinSource)
        Score(PipelineOptions options, IReadOnlyList<CandidateResult> results, Action<string> note)
    {
        var baseline = results.FirstOrDefault(r => r.Kind == "baseline");
        var others = results.Where(r => r.Kind != "baseline").ToList();
        if (baseline == null || others.Count == 0)
        {
            note("score: skipped, no compressed candidate to compare with the baseline");
            return (results, null, null, null, null);
        }
        if (baseline.AverageAccuracy is not double baseAcc || others.Any(o => o.AverageAccuracy is null))
        {
            note("score: skipped, no accuracy (no task had data)");
            return (results, null, null, null, null);
        }
        double pMax = options.PMax ?? baseAcc;
        string pMaxSource = options.PMax != null ? "given (--p-max)" : "baseline average accuracy";
        double pMin;
        string pMinSource;
        if (options.PMin is double given) { pMin = given; pMinSource = "given (--p-min)"; }
        else
        {
            pMin = ChanceAccuracy(baseline);
            pMinSource = "chance accuracy of the evaluated items";
            if (!(pMin < pMax))
            {
                pMin = pMax - FallbackPMinMargin;
                pMinSource = $"P_max − {FallbackPMinMargin.ToString(CultureInfo.InvariantCulture)} (the baseline scores at or below chance)";
            }
        }
        if (!(pMax > pMin))
        {
            note(string.Create(CultureInfo.InvariantCulture, $"score: skipped, P_max ({pMax:F4}) must be greater than P_min ({pMin:F4})"));
            return (results, null, null, null, null);
        }
        static ScoreEntry Entry(CandidateResult c) => new(c.Name, c.AverageAccuracy!.Value,
            new BenchNumbers(c.Bench.PrefillTokensPerSecond, c.Bench.DecodeTokensPerSecond, c.Bench.PeakMemoryBytes));
        IReadOnlyList<ScoreResult> scores;
        try { scores = AicasScore.Score(Entry(baseline), others.Select(Entry).ToList(), pMin, pMax); }
        catch (ArgumentException e)
        {
            note($"score: skipped, {e.Message}");
            return (results, pMax, pMin, pMaxSource, pMinSource);
        }
        var byName = scores.ToDictionary(s => s.Name);
        var scored = results.Select(r => byName.TryGetValue(r.Name, out var s) ? r with { Score = s } : r).ToList();
        return (scored, pMax, pMin, pMaxSource, pMinSource);
    }

    private static double ChanceAccuracy(CandidateResult baseline) =>
        baseline.Tasks.Where(t => t.Evaluated).Select(t => ChanceByTask.TryGetValue(t.Task, out double c) ? c : 0.25).Average();

    /// <summary>1 / number of choices of each task (ARC has a few 3- and 5-choice items; 4 is the rule).</summary>
    private static readonly Dictionary<string, double> ChanceByTask = new()
    {
        ["arc_challenge"] = 0.25, ["arc_easy"] = 0.25, ["hellaswag"] = 0.25, ["piqa"] = 0.5,
    };
}
