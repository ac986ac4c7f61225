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
    /// <summary>Qwen v1's tokenizer: tiktoken ranks, read by its remote-code QWenTokenizer.</summary>
    public const string TiktokenFileName = "qwen.tiktoken";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, Tensor> _tensors;

    public string Directory { get; }
    public HfConfig Config { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    /// <summary>Tensors by GGUF name; names outside the mapping keep their Hugging Face name.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;
    public long FileBytes => _files.Sum(f => f.FileLength);
    public string? TokenizerJsonPath { get; }
    public string? TiktokenPath { get; }

    private HfFolder(string dir, HfConfig config, List<SafetensorsFile> files, Dictionary<string, Tensor> tensors)
    {
        Directory = dir;
        Config = config;
        _files = files;
        _tensors = tensors;
        string tok = Path.Combine(dir, TokenizerFileName);
        TokenizerJsonPath = File.Exists(tok) ? tok : null;
        string tiktoken = Path.Combine(dir, TiktokenFileName);
        TiktokenPath = File.Exists(tiktoken) ? tiktoken : null;
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
                string name = HfTensorNames.ToGguf(hfName, config.ModelType) ?? hfName;
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
        // llama.cpp's qwen (v1) keeps config.json's intermediate_size: twice the MLP width.
        m.Set($"{a}.feed_forward_length", GgufValue.Of((uint)(a == "qwen" ? 2 * cfg.IntermediateSize : cfg.IntermediateSize)));
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
    /// Writes a config.json that transformers loads as Qwen2ForCausalLM (Qwen3ForCausalLM for "qwen3",
    /// LlamaForCausalLM for "llama", remote-code QWenLMHeadModel for "qwen"), with the fields a released checkpoint
    /// carries. Floats use the shortest round-trip form.
    /// </summary>
    public static void WriteConfig(string dir, ModelConfig cfg, string torchDtype)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        ArgumentException.ThrowIfNullOrEmpty(torchDtype);
        if (cfg.Architecture == "qwen")
        {
            WriteQwenConfig(dir, cfg, torchDtype);
            return;
        }
        bool llama = cfg.Architecture == "llama", qwen3 = cfg.Architecture == "qwen3";
        if (!llama && !qwen3 && cfg.Architecture != "qwen2")
            throw new ArgumentException($"cannot write a Hugging Face config for architecture '{cfg.Architecture}' (qwen2, qwen3, qwen, llama)");
        System.IO.Directory.CreateDirectory(dir);
        AtomicFile.Write(Path.Combine(dir, ConfigFileName), fs =>
        {
            using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            if (cfg.Name.Length > 0) j.WriteString("_name_or_path", cfg.Name);
            j.WriteStartArray("architectures");
            j.WriteStringValue(llama ? "LlamaForCausalLM" : qwen3 ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM");
            j.WriteEndArray();
            if (llama || qwen3) { j.WriteBoolean("attention_bias", false); }
            j.WriteNumber("attention_dropout", 0.0);
            if (cfg.BosTokenId is int bos) j.WriteNumber("bos_token_id", bos); else j.WriteNull("bos_token_id");
            if (cfg.EosTokenId is int eos) j.WriteNumber("eos_token_id", eos); else j.WriteNull("eos_token_id");
            if (llama || qwen3 || cfg.HeadDim * cfg.HeadCount != cfg.HiddenSize) j.WriteNumber("head_dim", cfg.HeadDim);
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

    /// <summary>config.json of a Qwen v1 checkpoint (QWenConfig, loaded with trust_remote_code).</summary>
    private static void WriteQwenConfig(string dir, ModelConfig cfg, string torchDtype)
    {
        if (cfg.KvHeadCount != cfg.HeadCount) throw new ArgumentException("Qwen (v1) has no grouped-query attention: kv heads must equal heads");
        if (cfg.TiedEmbeddings) throw new ArgumentException("Qwen (v1) checkpoints have an untied lm_head");
        System.IO.Directory.CreateDirectory(dir);
        AtomicFile.Write(Path.Combine(dir, ConfigFileName), fs =>
        {
            using var j = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            if (cfg.Name.Length > 0) j.WriteString("_name_or_path", cfg.Name);
            j.WriteStartArray("architectures");
            j.WriteStringValue("QWenLMHeadModel");
            j.WriteEndArray();
            j.WriteNumber("attn_dropout_prob", 0.0);
            j.WriteStartObject("auto_map");
            j.WriteString("AutoConfig", "configuration_qwen.QWenConfig");
            j.WriteString("AutoModelForCausalLM", "modeling_qwen.QWenLMHeadModel");
            j.WriteEndObject();
            j.WriteBoolean("bf16", torchDtype == "bfloat16");
            j.WriteNumber("emb_dropout_prob", 0.0);
            j.WriteBoolean("fp16", torchDtype == "float16");
            j.WriteBoolean("fp32", torchDtype == "float32");
            j.WriteNumber("hidden_size", cfg.HiddenSize);
            j.WriteNumber("initializer_range", 0.02);
            j.WriteNumber("intermediate_size", 2 * cfg.IntermediateSize);
            j.WriteNumber("kv_channels", cfg.HeadDim);
            WriteFloat(j, "layer_norm_epsilon", cfg.RmsNormEps);
            j.WriteNumber("max_position_embeddings", cfg.ContextLength);
            j.WriteString("model_type", "qwen");
            j.WriteBoolean("no_bias", true);
            j.WriteNumber("num_attention_heads", cfg.HeadCount);
            j.WriteNumber("num_hidden_layers", cfg.LayerCount);
            j.WriteNull("onnx_safe");
            WriteFloat(j, "rotary_emb_base", cfg.RopeTheta);
            j.WriteNumber("rotary_pct", 1.0);
            j.WriteBoolean("scale_attn_weights", true);
            j.WriteNumber("seq_length", cfg.ContextLength);
            j.WriteBoolean("tie_word_embeddings", false);
            j.WriteString("tokenizer_class", "QWenTokenizer");
            j.WriteString("torch_dtype", torchDtype);
            j.WriteString("transformers_version", "4.32.0");
            j.WriteBoolean("use_cache", true);
            j.WriteBoolean("use_dynamic_ntk", true);
            j.WriteString("use_flash_attn", "auto");
            j.WriteBoolean("use_logn_attn", true);
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
