using EdgeLM.Compression;
using EdgeLM.Compression.Methods;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class QuantizeCommand : Command
{
    public override string Name => "quantize";
    public override string Summary => "write a quantized GGUF (llama.cpp's type mixes) from a GGUF or Hugging Face model";
    public override string Usage => "edgelm quantize IN OUT.gguf --type TYPE [--tensor-type REGEX=TYPE ...] [--method rtn|mse|gptq|awq|autoround] [--calib FILE.txt [--calib-tokens N]] [--imatrix FILE] [-t N] [--report FILE.json]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--type", null, "TYPE", $"file type: {string.Join(", ", LlamaFileTypes.Names)}"),
        new("--tensor-type", null, "REGEX=TYPE", "give tensors whose name matches REGEX this tensor type (repeatable, first match wins), e.g. token_embd=q8_0"),
        new("--method", null, "NAME", $"quantization method: {string.Join(", ", TensorQuantizers.Methods)}", "rtn"),
        new("--calib", null, "FILE", "calibration text: activations for gptq/awq/autoround and the importance matrix for mse"),
        new("--calib-tokens", null, "N", "calibration tokens to run (and input rows kept per layer)", "512"),
        new("--calib-ctx", null, "N", "tokens per calibration chunk", "512"),
        new("--imatrix", null, "FILE", "importance matrix from 'edgelm imatrix' or llama-imatrix (weights the mse search)"),
        new("--act-order", null, null, "gptq: quantize columns in order of decreasing Hessian diagonal"),
        new("--autoround-steps", null, "N", "autoround: signed gradient descent steps per row (cost grows with it)", AutoRoundQuantizer.DefaultSteps.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ModelOptions.Tokenizer,
        new("--threads", "-t", "N", "worker threads", "all cores"),
        new("--allow-requantize", null, null, "accept input tensors that are already quantized"),
        new("--report", null, "FILE", "also write the report as JSON"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        if (a.Positional.Count != 2) throw new UsageException($"expected IN and OUT, got {a.Positional.Count} argument(s)");
        string input = a.Positional[0], output = a.Positional[1];
        string method = (a.Get("--method") ?? "rtn").Trim().ToLowerInvariant();
        if (!TensorQuantizers.Methods.Contains(method))
            throw new ArgumentException($"unknown quantization method '{method}' (available: {string.Join(", ", TensorQuantizers.Methods)})");
        string? calibPath = a.Get("--calib"), imatrixPath = a.Get("--imatrix");
        if (calibPath != null && !File.Exists(calibPath)) throw new FileNotFoundException($"calibration file not found: {calibPath}", calibPath);
        if (imatrixPath != null && !File.Exists(imatrixPath)) throw new FileNotFoundException($"imatrix file not found: {imatrixPath}", imatrixPath);
        if (TensorQuantizers.NeedsCalibration(method) && calibPath == null)
            throw new ArgumentException($"--method {method} needs calibration text: pass --calib FILE.txt");
        int calibTokens = a.Int("--calib-tokens", 512, 2, 1 << 20);
        int calibCtx = a.Int("--calib-ctx", 512, 2, 1 << 20);
        int threads = a.Int("--threads", Environment.ProcessorCount, 1, 1024);
        var fileType = LlamaFileTypes.Parse(a.Require("--type"));
        var overrides = a.GetAll("--tensor-type").Select(TensorTypeOverride.Parse).ToList();
        string? reportPath = a.Get("--report");
        CheckOutputPath(input, output, "output");
        if (reportPath != null) CheckOutputPath(input, reportPath, "report");

        using var model = ModelLoader.Load(input);
        CalibrationSet? calibration = null;
        if (calibPath != null)
        {
            var tokens = ImatrixCommand.CalibrationTokens(model, a, calibPath, calibTokens);
            Console.Error.WriteLine($"calibrating on {tokens.Count} tokens of {calibPath}");
            calibration = CalibrationSet.Collect(model, tokens.Tokens, Math.Min(calibCtx, tokens.Count), 0, calibTokens, tokens.Bos, threads, cancel: cancel);
        }
        ImportanceMatrix? importance = imatrixPath != null ? ImportanceMatrix.Load(imatrixPath)
            : calibration != null ? ImportanceMatrix.FromCalibration(model, calibration, calibPath) : null;
        var options = new QuantizeOptions
        {
            FileType = fileType,
            Overrides = overrides,
            Quantizer = TensorQuantizers.Create(method, calibration, a.Flag("--act-order"), a.Int("--autoround-steps", AutoRoundQuantizer.DefaultSteps, 0, 100000)),
            Threads = threads,
            AllowRequantize = a.Flag("--allow-requantize"),
            Importance = importance,
        };
        if (method == "awq")
            options = options with { Scalings = AwqQuantizer.Plan(model, calibration!, ModelQuantizer.Plan(model, options), cancel: cancel, threads: threads) };
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
