using EdgeLM.Compression;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class QuantizeCommand : Command
{
    public override string Name => "quantize";
    public override string Summary => "write a quantized GGUF (llama.cpp's type mixes) from a GGUF or Hugging Face model";
    public override string Usage => "edgelm quantize IN OUT.gguf --type TYPE [--tensor-type REGEX=TYPE ...] [--method rtn] [-t N] [--report FILE.json]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--type", null, "TYPE", $"file type: {string.Join(", ", LlamaFileTypes.Names)}"),
        new("--tensor-type", null, "REGEX=TYPE", "give tensors whose name matches REGEX this tensor type (repeatable, first match wins), e.g. token_embd=q8_0"),
        new("--method", null, "NAME", $"quantization method: {string.Join(", ", TensorQuantizers.Methods)}", "rtn"),
        new("--threads", "-t", "N", "worker threads", "all cores"),
        new("--allow-requantize", null, null, "accept input tensors that are already quantized"),
        new("--report", null, "FILE", "also write the report as JSON"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        if (a.Positional.Count != 2) throw new UsageException($"expected IN and OUT, got {a.Positional.Count} argument(s)");
        string input = a.Positional[0], output = a.Positional[1];
        var options = new QuantizeOptions
        {
            FileType = LlamaFileTypes.Parse(a.Require("--type")),
            Overrides = a.GetAll("--tensor-type").Select(TensorTypeOverride.Parse).ToList(),
            Quantizer = TensorQuantizers.Create(a.Get("--method") ?? "rtn"),
            Threads = a.Int("--threads", Environment.ProcessorCount, 1, 1024),
            AllowRequantize = a.Flag("--allow-requantize"),
        };
        string? reportPath = a.Get("--report");
        CheckOutputPath(input, output, "output");
        if (reportPath != null) CheckOutputPath(input, reportPath, "report");

        using var model = ModelLoader.Load(input);
        if (model.Format == "hf" && model.TokenizerJsonPath == null)
            Console.Error.WriteLine($"edgelm quantize: warning: {input} has no tokenizer.json, so the output carries no tokenizer (llama.cpp will not load it)");
        var progress = new QuantizeProgressLine();
        QuantizationReport report;
        try { report = ModelQuantizer.Quantize(model, output, options, progress, cancel); }
        finally { progress.Finish(); }

        report.WriteText(Console.Out);
        Console.Out.WriteLine($"wrote {output}");
        if (reportPath != null) report.SaveJson(reportPath);
        return 0;
    }

    /// <summary>Fails before any work when the output cannot be written, rather than after minutes of quantizing.</summary>
    private static void CheckOutputPath(string input, string path, string what)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{what} folder not found: {dir}");
        if (Directory.Exists(full)) throw new ArgumentException($"{what} {path} is a folder");
        if (string.Equals(full, Path.GetFullPath(input), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            throw new ArgumentException($"{what} {path} would overwrite the input");
    }
}

/// <summary>"quantize [ 12/291]  41% blk.3.ffn_down.weight" on standard error, redrawn in place on a terminal, every 10% otherwise.</summary>
internal sealed class QuantizeProgressLine : IProgress<QuantizeProgress>
{
    private int _lastPercent = -1;
    private int _lastTensor = -1;
    private bool _drawn;

    public void Report(QuantizeProgress p)
    {
        int percent = (int)(p.Fraction * 100);
        if (Console.IsErrorRedirected)
        {
            if (percent / 10 == _lastPercent / 10) return;
            _lastPercent = percent;
            Console.Error.WriteLine($"quantize: {percent}%");
            return;
        }
        if (percent == _lastPercent && p.TensorIndex == _lastTensor) return;
        (_lastPercent, _lastTensor) = (percent, p.TensorIndex);
        string line = $"quantize [{p.TensorIndex + 1,4}/{p.TensorCount}] {percent,3}% {p.TensorName}";
        Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 72)));
        _drawn = true;
    }

    public void Finish()
    {
        if (_drawn) Console.Error.WriteLine();
    }
}
