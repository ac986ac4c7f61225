using System.Text.Json;
using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Formats.HuggingFace;

/// <summary>
/// A Hugging Face model folder: config.json plus model.safetensors or model.safetensors.index.json with shards.
/// Tensors are exposed under GGUF names, pointing into the mapped shards.
/// </summary>
public sealed class HfFolder : IDisposable
{
    public const string ConfigFileName = "config.json";
    public const string TokenizerFileName = "tokenizer.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, Tensor> _tensors;

    public string Directory { get; }
    public HfConfig Config { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    /// <summary>Tensors by GGUF name; names outside the mapping keep their Hugging Face name.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;
    public long FileBytes => _files.Sum(f => f.FileLength);
    public string? TokenizerJsonPath { get; }

    private HfFolder(string dir, HfConfig config, List<SafetensorsFile> files, Dictionary<string, Tensor> tensors)
    {
        Directory = dir;
        Config = config;
        _files = files;
        _tensors = tensors;
        string tok = Path.Combine(dir, TokenizerFileName);
        TokenizerJsonPath = File.Exists(tok) ? tok : null;
    }

    public static HfFolder Open(string dir)
    {
        dir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{dir} has no {ConfigFileName}; not a Hugging Face model folder", configPath);
        var config = HfConfig.Load(configPath);

        var files = new List<SafetensorsFile>();
        try
        {
            foreach (string shard in WeightFiles(dir)) files.Add(SafetensorsFile.Open(Path.Combine(dir, shard)));
            var tensors = MapTensors(files, config);
            return new HfFolder(dir, config, files, tensors);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>The safetensors files to read, preferring a single model.safetensors as transformers does.</summary>
    private static List<string> WeightFiles(string dir)
    {
        if (File.Exists(Path.Combine(dir, ShardedSafetensorsWriter.SingleFileName))) return [ShardedSafetensorsWriter.SingleFileName];
        string indexPath = Path.Combine(dir, ShardedSafetensorsWriter.IndexFileName);
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"{dir} has neither {ShardedSafetensorsWriter.SingleFileName} nor {ShardedSafetensorsWriter.IndexFileName} (only safetensors checkpoints are supported)", indexPath);

        var shards = new List<string>();
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{indexPath}: missing 'weight_map' object");
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String) throw new InvalidDataException($"{indexPath}: weight_map entry '{entry.Name}' is not a file name");
                string file = entry.Value.GetString()!;
                // The index is untrusted: a shard must be a plain file name inside the folder.
                if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or ".." || file.Contains('/') || file.Contains('\\'))
                    throw new InvalidDataException($"{indexPath}: shard name '{file}' is not a plain file name");
                if (!shards.Contains(file)) shards.Add(file);
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{indexPath}: not valid JSON ({e.Message.Split('\n')[0]})");
        }
        if (shards.Count == 0) throw new InvalidDataException($"{indexPath}: weight_map is empty");
        foreach (var s in shards)
            if (!File.Exists(Path.Combine(dir, s))) throw new FileNotFoundException($"shard {s} listed in {indexPath} is missing", Path.Combine(dir, s));
        return shards;
    }

    private static Dictionary<string, Tensor> MapTensors(List<SafetensorsFile> files, HfConfig config)
    {
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            foreach (var (hfName, tensor) in file.Tensors)
            {
                // Tied checkpoints sometimes still carry a copy of lm_head; the embedding is the one used.
                if (hfName == "lm_head.weight" && config.TieWordEmbeddings) continue;
                // Older checkpoints store the RoPE inverse frequencies; they are recomputed from rope_theta.
                if (hfName.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue;
                string name = HfTensorNames.ToGguf(hfName) ?? hfName;
                if (!tensors.TryAdd(name, Rename(tensor, name)))
                    throw new InvalidDataException($"{file.Path}: tensor '{hfName}' appears more than once in the checkpoint");
            }
        }
        if (!config.TieWordEmbeddings && !tensors.ContainsKey("output.weight"))
            throw new InvalidDataException("config.json says tie_word_embeddings is false, but the checkpoint has no lm_head.weight");
        return tensors;
    }

    private static unsafe Tensor Rename(Tensor t, string name) =>
        t.Name == name ? t : new Tensor(name, t.Type, t.Shape, t.Data, t.ByteLength);

    public ModelConfig ModelConfig => Config.ToModelConfig(Config.NameOrPath.Length > 0 ? Config.NameOrPath : Path.GetFileName(Directory));

    /// <summary>Metadata with the keys llama.cpp's converter would write for this config.</summary>
    public GgufMetadata BuildGgufMetadata() => GgufMetadataFor(ModelConfig);

    /// <summary>The llama.cpp hyper-parameter keys for a config (as convert_hf_to_gguf.py writes them).</summary>
    public static GgufMetadata GgufMetadataFor(ModelConfig cfg)
    {
        var m = new GgufMetadata();
        string a = cfg.Architecture;
        m.Set("general.architecture", GgufValue.Of(a));
        if (cfg.Name.Length > 0) m.Set("general.name", GgufValue.Of(cfg.Name));
        m.Set($"{a}.context_length", GgufValue.Of((uint)cfg.ContextLength));
        m.Set($"{a}.embedding_length", GgufValue.Of((uint)cfg.HiddenSize));
        m.Set($"{a}.block_count", GgufValue.Of((uint)cfg.LayerCount));
        m.Set($"{a}.feed_forward_length", GgufValue.Of((uint)cfg.IntermediateSize));
        m.Set($"{a}.attention.head_count", GgufValue.Of((uint)cfg.HeadCount));
        m.Set($"{a}.attention.head_count_kv", GgufValue.Of((uint)cfg.KvHeadCount));
        m.Set($"{a}.attention.key_length", GgufValue.Of((uint)cfg.HeadDim));
        m.Set($"{a}.attention.value_length", GgufValue.Of((uint)cfg.HeadDim));
        m.Set($"{a}.rope.freq_base", GgufValue.Of((float)cfg.RopeTheta));
        m.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.Of((float)cfg.RmsNormEps));
        m.Set($"{a}.vocab_size", GgufValue.Of((uint)cfg.VocabSize));
        if (cfg.BosTokenId is int bos) m.Set("tokenizer.ggml.bos_token_id", GgufValue.Of((uint)bos));
        if (cfg.EosTokenId is int eos) m.Set("tokenizer.ggml.eos_token_id", GgufValue.Of((uint)eos));
        return m;
    }

    /// <summary>
    /// Writes a config.json that transformers loads as Qwen2ForCausalLM (or LlamaForCausalLM for "llama"),
    /// with the fields a released checkpoint carries. Floats use the shortest round-trip form.
    /// </summary>
    public static void WriteConfig(string dir, ModelConfig cfg, string torchDtype)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        ArgumentException.ThrowIfNullOrEmpty(torchDtype);
        bool llama = cfg.Architecture == "llama";
        if (!llama && cfg.Architecture != "qwen2")
            throw new ArgumentException($"cannot write a Hugging Face config for architecture '{cfg.Architecture}' (qwen2, llama)");
        System.IO.Directory.CreateDirectory(dir);
        AtomicFile.Write(Path.Combine(dir, ConfigFileName), fs =>
        {
            using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            if (cfg.Name.Length > 0) j.WriteString("_name_or_path", cfg.Name);
            j.WriteStartArray("architectures");
            j.WriteStringValue(llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM");
            j.WriteEndArray();
            if (llama) { j.WriteBoolean("attention_bias", false); }
            j.WriteNumber("attention_dropout", 0.0);
            if (cfg.BosTokenId is int bos) j.WriteNumber("bos_token_id", bos); else j.WriteNull("bos_token_id");
            if (cfg.EosTokenId is int eos) j.WriteNumber("eos_token_id", eos); else j.WriteNull("eos_token_id");
            if (llama || cfg.HeadDim * cfg.HeadCount != cfg.HiddenSize) j.WriteNumber("head_dim", cfg.HeadDim);
            j.WriteString("hidden_act", "silu");
            j.WriteNumber("hidden_size", cfg.HiddenSize);
            j.WriteNumber("initializer_range", 0.02);
            j.WriteNumber("intermediate_size", cfg.IntermediateSize);
            j.WriteNumber("max_position_embeddings", cfg.ContextLength);
            if (!llama) j.WriteNumber("max_window_layers", cfg.LayerCount);
            if (llama) j.WriteBoolean("mlp_bias", false);
            j.WriteString("model_type", cfg.Architecture);
            j.WriteNumber("num_attention_heads", cfg.HeadCount);
            j.WriteNumber("num_hidden_layers", cfg.LayerCount);
            j.WriteNumber("num_key_value_heads", cfg.KvHeadCount);
            if (llama) j.WriteNumber("pretraining_tp", 1);
            WriteFloat(j, "rms_norm_eps", cfg.RmsNormEps);
            j.WriteNull("rope_scaling");
            WriteFloat(j, "rope_theta", cfg.RopeTheta);
            if (!llama) j.WriteNull("sliding_window");
            j.WriteBoolean("tie_word_embeddings", cfg.TiedEmbeddings);
            j.WriteString("torch_dtype", torchDtype);
            j.WriteString("transformers_version", "4.45.0");
            j.WriteBoolean("use_cache", true);
            if (!llama) j.WriteBoolean("use_sliding_window", false);
            j.WriteNumber("vocab_size", cfg.VocabSize);
            j.WriteEndObject();
        });
    }

    private static void WriteFloat(Utf8JsonWriter j, string name, double v)
    {
        // Shortest round-trip text ("1E-06") is valid JSON and reads back to the same double in Python.
        string text = HfConfig.FormatFloat(v);
        // Keep floats recognisably floats for Python ("1000000.0", not "1000000").
        if (!text.Contains('.') && !text.Contains('E')) text += ".0";
        j.WritePropertyName(name);
        j.WriteRawValue(text);
    }

    public static string TorchDtypeName(GgmlType type) => type switch
    {
        GgmlType.F32 => "float32",
        GgmlType.F16 => "float16",
        GgmlType.BF16 => "bfloat16",
        _ => throw new ArgumentException($"Hugging Face checkpoints hold F32, F16 or BF16 tensors, not {type}"),
    };

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
