using EdgeLM.Compression.Lora;
using EdgeLM.Compression.Rewriting;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class MergeLoraCommand : Command
{
    public override string Name => "merge-lora";
    public override string Summary => "merge a PEFT LoRA adapter into the weights (QA-LoRA: into the mins of a Q4_1/Q5_1 model)";
    public override string Usage => "edgelm merge-lora -m BASE --adapter DIR -o OUT [--qa-lora] [--hf]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--adapter", null, "DIR", "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)"),
        new("--output", "-o", "OUT", "output .gguf file, or a folder name (no extension) for a Hugging Face folder"),
        new("--qa-lora", null, null, "group-wise (QA-LoRA) adapter merged into the zero points of a Q4_1/Q5_1 model"),
        new("--hf", null, null, "write a Hugging Face folder"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string input = a.Require("--model"), adapterDir = a.Require("--adapter"), output = a.Require("--output");
        bool qaLora = a.Flag("--qa-lora");
        bool folder = ModelRewriter.IsFolderOutput(output, a.Flag("--hf"));
        if (folder && qaLora) throw new ArgumentException("a QA-LoRA merge stays quantized, so it is written as GGUF; give OUT a .gguf name");
        ModelRewriter.CheckOutput(input, output, folder);

        using var model = ModelLoader.Load(input);
        var adapter = LoraAdapter.Load(adapterDir, model.Config.Architecture);
        LoraMerger.Validate(model, adapter, qaLora);
        cancel.ThrowIfCancellationRequested();
        Console.Out.WriteLine($"adapter: {adapter}");
        string? warning = LoraMerger.Write(model, adapter, qaLora, output, folder);
        if (warning != null) Console.Error.WriteLine("edgelm merge-lora: warning: " + warning);
        foreach (var m in adapter.Modules) Console.Out.WriteLine($"  merged {m.HfModule} -> {m.WeightName}");
        Console.Out.WriteLine($"wrote {output}");
        return 0;
    }
}
