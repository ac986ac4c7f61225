using EdgeLM.Compression.Methods;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class ImatrixCommand : Command
{
    public override string Name => "imatrix";
    public override string Summary => "collect an importance matrix (mean x² per input column of every linear weight) over calibration text";
    public override string Usage => "edgelm imatrix -m MODEL -f FILE.txt -o IMATRIX.gguf [--chunks N] [--ctx 512]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--file", "-f", "FILE", "calibration text"),
        new("--output", "-o", "FILE", "imatrix file to write (llama.cpp's GGUF imatrix layout)"),
        new("--chunks", null, "N", "process at most N chunks", "all"),
        new("--ctx", "-c", "N", "tokens per chunk", "512"),
        ModelOptions.Tokenizer,
        ModelOptions.Threads,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        if (a.Positional.Count != 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        string modelPath = a.Require("--model"), textPath = a.Require("--file"), output = a.Require("--output");
        if (!File.Exists(textPath)) throw new FileNotFoundException($"calibration file not found: {textPath}", textPath);
        string dir = Path.GetDirectoryName(Path.GetFullPath(output)) ?? ".";
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output folder not found: {dir}");
        int chunks = a.Int("--chunks", 0, 0);
        int ctx = a.Int("--ctx", 512, 2, 1 << 20);

        using var model = ModelLoader.Load(modelPath);
        var tokens = CalibrationTokens(model, a, textPath, chunks > 0 ? (long)chunks * ctx : int.MaxValue);
        var calibration = CalibrationSet.Collect(model, tokens.Tokens, Math.Min(ctx, tokens.Count), chunks, 0, tokens.Bos,
            ModelOptions.ThreadCount(a), new Progress(), cancel);
        Console.Error.WriteLine();
        var matrix = ImportanceMatrix.FromCalibration(model, calibration, textPath);
        matrix.Save(output);
        Console.Out.WriteLine($"{matrix.Entries.Count} entries from {calibration.ChunkCount} chunks of {calibration.ChunkSize} tokens; wrote {output}");
        return 0;
    }

    internal sealed record CalibrationText(IReadOnlyList<int> Tokens, int? Bos)
    {
        public int Count => Tokens.Count;
    }

    /// <summary>The first <paramref name="maxTokens"/> tokens of a calibration text file, with the BOS chunks should start with.</summary>
    internal static CalibrationText CalibrationTokens(LoadedModel model, ParsedArgs a, string path, long maxTokens)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"calibration file not found: {path}", path);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        var tokens = tokenizer.Encode(File.ReadAllText(path), parseSpecial: false);
        if (tokens.Length < 2) throw new InvalidDataException($"calibration file {path} has {tokens.Length} token(s); at least 2 are needed");
        int bad = Array.FindIndex(tokens, t => t >= model.Config.VocabSize);
        if (bad >= 0) throw new InvalidDataException($"the tokenizer produced id {tokens[bad]}, outside the model's vocabulary of {model.Config.VocabSize}");
        int? bos = tokenizer.AddBos ? tokenizer.BosId : null;
        return new CalibrationText(tokens.Take((int)Math.Min(tokens.Length, maxTokens)).ToArray(), bos);
    }

    private sealed class Progress : IProgress<double>
    {
        public void Report(double value) => Console.Error.Write($"\rimatrix {value * 100,3:0}%");
    }
}
