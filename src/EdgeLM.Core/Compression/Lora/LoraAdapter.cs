using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Kernels;
using EdgeLM.Tensors;

namespace EdgeLM.Compression.Lora;

/// <summary>
/// One adapted linear layer: the base weight's GGUF name, A as [r, a] row-major (a = in features, or in / group
/// size for a QA-LoRA adapter whose A acts on group-pooled inputs) and B as [out, r] row-major, in float.
/// </summary>
public sealed record LoraModule(string HfModule, string WeightName, int Rank, int AColumns, int OutFeatures, float[] A, float[] B);

/// <summary>
/// A PEFT LoRA adapter folder: adapter_config.json (r, lora_alpha, target_modules, fan_in_fan_out, use_rslora) and
/// adapter_model.safetensors with base_model.model.&lt;module&gt;.lora_A.weight [r, in] and lora_B.weight [out, r].
/// Everything is validated on load, so a merge never starts on an adapter it cannot finish.
/// </summary>
public sealed class LoraAdapter
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    private const string Prefix = "base_model.model.";

    public int Rank { get; }
    public double Alpha { get; }
    public bool UseRsLora { get; }
    /// <summary>PEFT turns fan_in_fan_out off for torch.nn.Linear layers (every Qwen/Llama projection), and so does EdgeLM.</summary>
    public bool FanInFanOut { get; }
    public IReadOnlyList<string> TargetModules { get; }
    public IReadOnlyList<LoraModule> Modules { get; }

    /// <summary>PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA.</summary>
    public double Scale => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    private LoraAdapter(int rank, double alpha, bool rslora, bool fanInFanOut, IReadOnlyList<string> targets, IReadOnlyList<LoraModule> modules)
    {
        Rank = rank; Alpha = alpha; UseRsLora = rslora; FanInFanOut = fanInFanOut; TargetModules = targets; Modules = modules;
    }

    /// <param name="architecture">The base model's architecture, which decides how module names map to GGUF names.</param>
    public static LoraAdapter Load(string dir, string architecture)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"adapter folder not found: {dir}");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{dir} has no {ConfigFileName}; not a PEFT adapter folder", configPath);
        string weightsPath = Path.Combine(dir, WeightsFileName);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException(File.Exists(Path.Combine(dir, "adapter_model.bin"))
                ? $"{dir} has adapter_model.bin; only adapter_model.safetensors is supported"
                : $"{dir} has no {WeightsFileName}", weightsPath);

        var (rank, alpha, rslora, fanInFanOut, targets, targetRegex) = ReadConfig(configPath);
        using var file = SafetensorsFile.Open(weightsPath);
        var parts = new Dictionary<string, (Tensor? A, Tensor? B)>(StringComparer.Ordinal);
        foreach (var (name, tensor) in file.Tensors)
        {
            var m = Regex.Match(name, @"^base_model\.model\.(.+)\.lora_([AB])\.weight$", RegexOptions.CultureInvariant);
            if (!m.Success)
                throw new InvalidDataException($"{weightsPath}: unsupported adapter tensor '{name}' (only {Prefix}<module>.lora_A.weight / lora_B.weight)");
            string module = m.Groups[1].Value;
            parts.TryGetValue(module, out var p);
            parts[module] = m.Groups[2].Value == "A" ? (tensor, p.B) : (p.A, tensor);
        }
        if (parts.Count == 0) throw new InvalidDataException($"{weightsPath} holds no LoRA weights");

        var modules = new List<LoraModule>();
        foreach (var (module, (a, b)) in parts.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (a is null || b is null) throw new InvalidDataException($"adapter module '{module}' has lora_{(a is null ? "B" : "A")} but no lora_{(a is null ? "A" : "B")}");
            string shortName = module[(module.LastIndexOf('.') + 1)..];
            bool targeted = targetRegex != null
                ? targetRegex.IsMatch(module)
                : targets.Any(t => module == t || module.EndsWith("." + t, StringComparison.Ordinal));
            if (!targeted) throw new InvalidDataException($"adapter module '{module}' is not in target_modules [{string.Join(", ", targets)}]");
            string weightName = HfTensorNames.ToGguf(module + ".weight", architecture)
                ?? throw new InvalidDataException($"unknown target module '{shortName}' ({module}): not a linear layer of a {architecture} model");
            if (a.Shape.Length != 2 || b.Shape.Length != 2)
                throw new InvalidDataException($"adapter module '{module}': lora_A and lora_B must be matrices");
            int aRank = checked((int)a.Shape[1]), aColumns = checked((int)a.Shape[0]);
            int bOut = checked((int)b.Shape[1]), bRank = checked((int)b.Shape[0]);
            if (aRank != rank || bRank != rank)
                throw new InvalidDataException($"adapter module '{module}': lora_A is [{aRank}, {aColumns}] and lora_B [{bOut}, {bRank}], but r = {rank}");
            modules.Add(new LoraModule(module, weightName, rank, aColumns, bOut, ToFloat(a), ToFloat(b)));
        }
        return new LoraAdapter(rank, alpha, rslora, fanInFanOut, targets, modules);
    }

    private static float[] ToFloat(Tensor t)
    {
        var values = new float[checked((int)t.ElementCount)];
        int n = t.RowLength;
        for (long r = 0; r < t.RowCount; r++) RowConvert.Row(t, r, values.AsSpan(checked((int)(r * n)), n));
        return values;
    }

    private static (int Rank, double Alpha, bool RsLora, bool FanInFanOut, List<string> Targets, Regex? TargetRegex) ReadConfig(string path)
    {
        InvalidDataException Bad(string message) => new($"{path}: {message}");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad("not a JSON object");
            if (root.TryGetProperty("peft_type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() != "LORA")
                throw Bad($"peft_type {type.GetString()} is not LORA");
            if (!root.TryGetProperty("r", out var r) || !r.TryGetInt32(out int rank) || rank <= 0 || rank > 65536)
                throw Bad("'r' must be a positive integer");
            double alpha = 8; // PEFT's LoraConfig default
            if (root.TryGetProperty("lora_alpha", out var a))
                if (a.ValueKind != JsonValueKind.Number || !double.IsFinite(alpha = a.GetDouble())) throw Bad("'lora_alpha' must be a number");
            bool Flag(string name) => root.TryGetProperty(name, out var v) && v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False or JsonValueKind.Null => false,
                _ => throw Bad($"'{name}' must be true or false"),
            };
            if (Flag("use_dora")) throw Bad("DoRA adapters (use_dora) are not supported");
            foreach (string pattern in new[] { "rank_pattern", "alpha_pattern" })
                if (root.TryGetProperty(pattern, out var p) && p.ValueKind == JsonValueKind.Object && p.EnumerateObject().Any())
                    throw Bad($"per-module '{pattern}' is not supported");
            var targets = new List<string>();
            Regex? regex = null;
            if (!root.TryGetProperty("target_modules", out var t)) throw Bad("missing 'target_modules'");
            if (t.ValueKind == JsonValueKind.String)
            {
                // PEFT treats a string as a regular expression over the full module name.
                targets.Add(t.GetString()!);
                regex = new Regex("^(?:" + t.GetString() + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            else if (t.ValueKind == JsonValueKind.Array)
            {
                foreach (var e in t.EnumerateArray())
                    targets.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad("'target_modules' must list module names"));
            }
            else throw Bad("'target_modules' must be a list of module names or a regular expression");
            return (rank, alpha, Flag("use_rslora"), Flag("fan_in_fan_out"), targets, regex);
        }
        catch (JsonException e)
        {
            throw Bad($"not valid JSON ({e.Message.Split('\n')[0]})");
        }
        catch (ArgumentException e)
        {
            throw Bad($"invalid target_modules pattern ({e.Message.Split('\n')[0]})");
        }
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"LoRA r={Rank} alpha={Alpha}{(UseRsLora ? " rslora" : "")} scale={Scale:G6}, {Modules.Count} modules");
}
