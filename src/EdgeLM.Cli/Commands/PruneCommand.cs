using System.Globalization;
using EdgeLM.Compression.Pruning;
using EdgeLM.Compression.Rewriting;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class PruneCommand : Command
{
    public override string Name => "prune";
    public override string Summary => "remove transformer blocks chosen on calibration text (ShortGPT or SLEB)";
    public override string Usage => "edgelm prune -m IN -o OUT --remove N --method shortgpt|sleb --calib FILE.txt [--calib-tokens 2048] [--ctx 512] [--hf]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--output", "-o", "OUT", "output .gguf file, or a folder name (no extension) for a Hugging Face folder"),
        new("--remove", null, "N", "number of blocks to remove"),
        new("--method", null, "NAME", "shortgpt (lowest block influence) or sleb (greedy, least perplexity increase)"),
        new("--calib", null, "FILE", "calibration text (UTF-8)"),
        new("--calib-tokens", null, "N", "calibration tokens to use from the start of the text", "2048"),
        new("--ctx", "-c", "N", "calibration window length in tokens", "512"),
        new("--hf", null, null, "write a Hugging Face folder (F32/F16/BF16 models only)"),
        ModelOptions.Threads, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string input = a.Require("--model"), output = a.Require("--output");
        var method = LayerPruner.ParseMethod(a.Require("--method"));
        int remove = a.Int("--remove", 0, 1, 1024);
        if (!a.Has("--remove")) throw new UsageException("'edgelm prune' needs --remove");
        string calib = a.Require("--calib");
        int calibTokens = a.Int("--calib-tokens", 2048, 2, int.MaxValue);
        bool folder = ModelRewriter.IsFolderOutput(output, a.Flag("--hf"));
        if (!File.Exists(calib)) throw new FileNotFoundException($"calibration file not found: {calib}", calib);
        ModelRewriter.CheckOutput(input, output, folder);

        using var model = ModelLoader.Load(input);
        int ctx = a.Int("--ctx", Math.Min(512, model.Config.ContextLength), 2, model.Config.ContextLength);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        var tokens = tokenizer.Encode(File.ReadAllText(calib));
        if (tokens.Length > calibTokens) tokens = tokens[..calibTokens];
        ctx = Math.Min(ctx, Math.Max(2, tokens.Length));
        var options = new PruneOptions
        {
            Method = method, RemoveCount = remove, Context = ctx, Threads = ModelOptions.ThreadCount(a),
            BosId = tokenizer.AddBos ? tokenizer.BosId : null,
        };
        var result = LayerPruner.Select(model.Config, model.Tensors, tokens, options, new SynchronousProgress(line => Console.Error.WriteLine("prune: " + line)), cancel);
        Print(result);

        string? warning = LayerPruner.Write(model, result.Removed, output, folder);
        if (warning != null) Console.Error.WriteLine("edgelm prune: warning: " + warning);
        Console.Out.WriteLine($"wrote {output} ({model.Config.LayerCount - result.Removed.Count} blocks)");
        return 0;
    }

    private static void Print(PruneResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        Console.Out.WriteLine(string.Create(inv, $"baseline calibration perplexity: {r.BaselinePerplexity:F4}"));
        for (int i = 0; i < r.Rounds.Count; i++)
        {
            var round = r.Rounds[i];
            Console.Out.WriteLine(r.Method == PruneMethod.ShortGpt
                ? "block  influence (1 - cos)"
                : $"round {i + 1}: block  perplexity without it");
            foreach (var s in round.Scores)
                Console.Out.WriteLine(string.Create(inv, $"  {s.Block,5}  {s.Score,12:G6}{(round.Removed.Contains(s.Block) ? "  removed" : "")}"));
        }
        Console.Out.WriteLine($"removed blocks: {string.Join(", ", r.Removed)}");
    }

    /// <summary>Reports on the calling thread, so progress lines and the table never interleave.</summary>
    private sealed class SynchronousProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
