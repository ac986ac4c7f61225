using System.Text.Json;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Tests.Models;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Formats;

public class HuggingFaceTests
{
    [Theory]
    [InlineData("model.embed_tokens.weight", "token_embd.weight")]
    [InlineData("model.norm.weight", "output_norm.weight")]
    [InlineData("lm_head.weight", "output.weight")]
    [InlineData("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight")]
    [InlineData("model.layers.11.self_attn.q_proj.weight", "blk.11.attn_q.weight")]
    [InlineData("model.layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight")]
    [InlineData("model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight")]
    [InlineData("model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias")]
    [InlineData("model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias")]
    [InlineData("model.layers.3.self_attn.v_proj.bias", "blk.3.attn_v.bias")]
    [InlineData("model.layers.27.self_attn.o_proj.weight", "blk.27.attn_output.weight")]
    [InlineData("model.layers.5.post_attention_layernorm.weight", "blk.5.ffn_norm.weight")]
    [InlineData("model.layers.5.mlp.gate_proj.weight", "blk.5.ffn_gate.weight")]
    [InlineData("model.layers.5.mlp.up_proj.weight", "blk.5.ffn_up.weight")]
    [InlineData("model.layers.5.mlp.down_proj.weight", "blk.5.ffn_down.weight")]
    public void NamesMapBothWays(string hf, string gguf)
    {
        Assert.Equal(gguf, HfTensorNames.ToGguf(hf));
        Assert.Equal(hf, HfTensorNames.ToHf(gguf));
    }

    [Theory]
    [InlineData("model.layers.01.mlp.up_proj.weight")]
    [InlineData("model.layers.x.mlp.up_proj.weight")]
    [InlineData("model.layers.1.mlp.other.weight")]
    [InlineData("model.layers..mlp.up_proj.weight")]
    [InlineData("embed_tokens.weight")]
    public void UnknownNamesDoNotMap(string hf) => Assert.Null(HfTensorNames.ToGguf(hf));

    private static string WriteJson(string json)
    {
        string dir = TestPaths.NewTempDir();
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void ConfigDefaultsFollowTransformers()
    {
        var c = HfConfig.Load(WriteJson("""
            {"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
             "num_attention_heads":8,"vocab_size":100,"eos_token_id":[7,9],"bos_token_id":null}
            """));
        Assert.Equal(8, c.NumKeyValueHeads);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal(32768, c.MaxPositionEmbeddings);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(7, c.EosTokenId);
        Assert.Null(c.BosTokenId);
        Assert.Equal(EdgeLM.Models.RopeStyle.Neox, c.ToModelConfig("x").RopeStyle);

        var llama = HfConfig.Load(WriteJson("""
            {"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":8,
             "num_key_value_heads":2,"head_dim":16,"vocab_size":100,"dtype":"bfloat16","rope_theta":500000.0}
            """));
        Assert.Equal(16, llama.HeadDim);
        Assert.Equal(2048, llama.MaxPositionEmbeddings);
        Assert.Equal("bfloat16", llama.TorchDtype);
        Assert.Equal(EdgeLM.Models.RopeStyle.Neox, llama.ToModelConfig("x").RopeStyle);
    }

    [Theory]
    [InlineData("""{"model_type":"gemma","hidden_size":1}""", "gemma")]
    [InlineData("""{"hidden_size":1}""", "model_type")]
    [InlineData("""{"model_type":"qwen2","hidden_size":"big"}""", "hidden_size")]
    [InlineData("""{"model_type":"qwen2","hidden_size":32""", "JSON")]
    [InlineData("""[1]""", "object")]
    public void BadConfigIsInvalidData(string json, string mentioned)
    {
        var e = Assert.Throws<InvalidDataException>(() => HfConfig.Load(WriteJson(json)));
        Assert.Contains(mentioned, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void WriteConfigProducesATransformersConfig()
    {
        var cfg = TinyModel.QwenConfig();
        string dir = TestPaths.NewTempDir();
        HfFolder.WriteConfig(dir, cfg, "bfloat16");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var r = doc.RootElement;
        Assert.Equal("Qwen2ForCausalLM", r.GetProperty("architectures")[0].GetString());
        Assert.Equal("qwen2", r.GetProperty("model_type").GetString());
        Assert.Equal("silu", r.GetProperty("hidden_act").GetString());
        Assert.Equal("bfloat16", r.GetProperty("torch_dtype").GetString());
        Assert.Equal(1e-6, r.GetProperty("rms_norm_eps").GetDouble());
        Assert.Equal("1000000.0", r.GetProperty("rope_theta").GetRawText());
        Assert.Equal(JsonValueKind.False, r.GetProperty("tie_word_embeddings").ValueKind);
        foreach (var key in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "vocab_size" })
            Assert.Equal(JsonValueKind.Number, r.GetProperty(key).ValueKind);
        Assert.False(r.TryGetProperty("head_dim", out _)); // implied by hidden/heads for Qwen2

        var back = HfConfig.Load(Path.Combine(dir, "config.json"));
        Assert.Equal(cfg, back.ToModelConfig(cfg.Name));
        Assert.Equal(["Qwen2ForCausalLM"], back.Architectures);
    }

    [Fact]
    public void UntiedFolderWithoutLmHeadIsRejected()
    {
        var model = new TinyModel(TinyModel.QwenConfig(tied: false));
        model.Tensors.RemoveAll(t => t.GgufName == "output.weight");
        string dir = model.WriteHf(Path.Combine(TestPaths.NewTempDir(), "hf"));
        var e = Assert.Throws<InvalidDataException>(() => HfFolder.Open(dir).Dispose());
        Assert.Contains("lm_head.weight", e.Message);
    }

    [Fact]
    public void ShardedFolderMapsAllNames()
    {
        var model = new TinyModel(TinyModel.QwenConfig());
        string dir = model.WriteHf(Path.Combine(TestPaths.NewTempDir(), "hf"), maxShardBytes: 4096);
        using var f = HfFolder.Open(dir);
        Assert.True(f.Files.Count > 2);
        Assert.Equal(model.Tensors.Select(t => t.GgufName).Order(), f.Tensors.Keys.Order());
        Assert.Equal(f.Files.Sum(x => x.FileLength), f.FileBytes);
    }

    [Theory]
    [InlineData("../evil.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("sub/x.safetensors")]
    public void IndexCannotPointOutsideTheFolder(string shard)
    {
        string dir = TestPaths.NewTempDir();
        HfFolder.WriteConfig(dir, TinyModel.QwenConfig(), "float32");
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
            "{\"metadata\":{},\"weight_map\":{\"model.norm.weight\":" + JsonSerializerString(shard) + "}}");
        var e = Assert.Throws<InvalidDataException>(() => HfFolder.Open(dir).Dispose());
        Assert.Contains("plain file name", e.Message);
    }

    private static string JsonSerializerString(string s)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) w.WriteStringValue(s);
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}
