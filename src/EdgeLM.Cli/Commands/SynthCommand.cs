using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

internal sealed class SynthCommand : Command
{
    public override string Name => "synth";
    public override string Summary => "write a random-weight model with the exact shapes of a real one";
    public override string Usage => $"edgelm synth --preset {string.Join('|', ModelPresets.Names)} -o FILE.gguf [--type f32|f16|bf16] [--seed N] [--tokenizer tokenizer.json] [--hf-dir DIR]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--preset", null, "NAME", $"architecture: {string.Join(", ", ModelPresets.Names)}"),
        new("--output", "-o", "FILE", "GGUF file to write"),
        new("--type", null, "TYPE", "weight type: f32, f16 or bf16", "f16"),
        new("--seed", null, "N", "random seed", "1"),
        new("--tokenizer", null, "FILE", "embed this tokenizer.json (otherwise a byte-level tokenizer); Qwen v1 presets get qwen.tiktoken ranks built from it"),
        new("--hf-dir", null, "DIR", "also write the same weights as a Hugging Face folder"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string presetName = a.Require("--preset");
        string? output = a.Get("--output");
        string? hfDir = a.Get("--hf-dir");
        if (output == null && hfDir == null) throw new UsageException("give -o FILE.gguf and/or --hf-dir DIR");
        var type = ParseType(a.Get("--type") ?? "f16");
        ulong seed = a.ULong("--seed") ?? 1;
        ModelConfigOrUsage(presetName, out var config);
        string? tokenizerPath = a.Get("--tokenizer");
        var tokenizer = tokenizerPath != null ? BpeTokenizer.FromTokenizerJson(tokenizerPath) : null;
        if (tokenizer != null && tokenizer.VocabSize > config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens, more than the model's vocabulary of {config.VocabSize}");

        long parameters = SyntheticModel.ParameterCount(config);
        Console.Error.WriteLine($"{config.Name}: {parameters:N0} parameters, {type}, seed {seed}");
        if (output != null)
        {
            SyntheticModel.WriteGguf(output, config, type, seed, tokenizer, new ConsoleProgress("gguf"));
            Console.Error.WriteLine($"wrote {output} ({new FileInfo(output).Length:N0} bytes)");
        }
        if (hfDir != null)
        {
            SyntheticModel.WriteHuggingFace(hfDir, config, type, seed, tokenizerPath, new ConsoleProgress("safetensors"));
            Console.Error.WriteLine($"wrote Hugging Face folder {hfDir}");
        }
        return 0;
    }

    private static void ModelConfigOrUsage(string name, out Models.ModelConfig config)
    {
        try { config = ModelPresets.Get(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    internal static GgmlType ParseType(string s) => s.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        _ => throw new UsageException($"unknown type '{s}' (synthetic models are f32, f16 or bf16)"),
    };
}

/// <summary>A percentage on standard error that redraws in place when it is a terminal, and prints sparsely when not.</summary>
internal sealed class ConsoleProgress(string label) : IProgress<double>
{
    private int _last = -1;

    public void Report(double value)
    {
        int pct = (int)(value * 100);
        if (pct == _last) return;
        if (Console.IsErrorRedirected && pct % 25 != 0) return;
        _last = pct;
        if (Console.IsErrorRedirected) Console.Error.WriteLine($"{label}: {pct}%");
        else Console.Error.Write($"\r{label}: {pct,3}%{(pct == 100 ? Environment.NewLine : "")}");
    }
}
