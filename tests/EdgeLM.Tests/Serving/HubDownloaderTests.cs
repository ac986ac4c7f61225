using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EdgeLM.Tests.Serving;

/// <summary>A loopback server with the Hub's URL layout (file list API and resolve/ URLs, Range support).</summary>
public sealed class LoopbackHub : IAsyncDisposable
{
    private readonly WebApplication _app;
    public Dictionary<string, byte[]> Files { get; } = [];
    /// <summary>Bytes actually served for a path, when they differ from <see cref="Files"/> (a corrupted mirror).</summary>
    public Dictionary<string, byte[]> Served { get; } = [];
    public ConcurrentQueue<string> Requests { get; } = new();
    public string? LastAuthorization { get; private set; }

    public LoopbackHub()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        _app = builder.Build();
        _app.MapGet("/api/models/{owner}/{name}/revision/{rev}", (HttpContext ctx) =>
        {
            LastAuthorization = ctx.Request.Headers.Authorization.ToString();
            var sb = new StringBuilder("{\"id\":\"o/n\",\"sha\":\"abc\",\"siblings\":[");
            sb.AppendJoin(',', Files.Select(kv => kv.Key.EndsWith(".json")
                ? $"{{\"rfilename\":\"{kv.Key}\",\"size\":{kv.Value.Length},\"blobId\":\"{GitBlobId(kv.Value)}\"}}"
                : $"{{\"rfilename\":\"{kv.Key}\",\"size\":{kv.Value.Length},\"blobId\":\"0123\",\"lfs\":{{\"sha256\":\"{Convert.ToHexStringLower(SHA256.HashData(kv.Value))}\",\"size\":{kv.Value.Length},\"pointerSize\":130}}}}"));
            sb.Append("]}");
            return Results.Text(sb.ToString(), "application/json");
        });
        _app.MapGet("/{owner}/{name}/resolve/{rev}/{**path}", (HttpContext ctx, string path) =>
        {
            Requests.Enqueue($"{path} {ctx.Request.Headers.Range}");
            if (!Files.ContainsKey(path)) return Results.NotFound();
            return Results.Bytes(Served.TryGetValue(path, out var bad) ? bad : Files[path], "application/octet-stream", enableRangeProcessing: true);
        });
    }

    public static string GitBlobId(byte[] data) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {data.Length}\0"), .. data]));

    public async Task<string> StartAsync()
    {
        await _app.StartAsync();
        return _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

public class HubDownloaderTests
{
    private static byte[] RandomBytes(int n, int seed) { var b = new byte[n]; new Random(seed).NextBytes(b); return b; }

    private static async Task<(LoopbackHub Hub, HubDownloader Downloader, HttpClient Http)> StartAsync()
    {
        var hub = new LoopbackHub();
        hub.Files["config.json"] = Encoding.UTF8.GetBytes("{\"model_type\":\"qwen2\"}");
        hub.Files["tokenizer.json"] = Encoding.UTF8.GetBytes("{\"model\":{}}");
        hub.Files["model.safetensors"] = RandomBytes(300_000, 1);
        hub.Files["model-q4.gguf"] = RandomBytes(50_000, 2);
        hub.Files["README.md"] = Encoding.UTF8.GetBytes("# readme");
        string endpoint = await hub.StartAsync();
        var http = new HttpClient();
        return (hub, new HubDownloader(http, endpoint, token: "hf_test"), http);
    }

    private static async Task PullAsync(HubDownloader d, string dir, params string[] include)
    {
        var files = HubDownloader.Select(await d.ListFilesAsync("owner/name", "main"), include);
        foreach (var f in files) await d.DownloadAsync("owner/name", "main", f, dir);
    }

    [Fact]
    public async Task FullDownloadFetchesTheDefaultSetVerifiedAndSendsTheToken()
    {
        var (hub, d, http) = await StartAsync();
        await using var _ = hub; using var __ = http;
        string dir = TestPaths.NewTempDir();
        await PullAsync(d, dir);
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], Directory.GetFiles(dir).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray());
        foreach (var name in new[] { "config.json", "tokenizer.json", "model.safetensors" })
            Assert.Equal(hub.Files[name], File.ReadAllBytes(Path.Combine(dir, name)));
        Assert.Equal("Bearer hf_test", hub.LastAuthorization);

        string ggufDir = TestPaths.NewTempDir();
        await PullAsync(d, ggufDir, "*.gguf");
        Assert.Equal(["model-q4.gguf"], Directory.GetFiles(ggufDir).Select(f => Path.GetFileName(f)!).ToArray());
    }

    [Fact]
    public async Task PartialFileIsResumedWithARangeRequest()
    {
        var (hub, d, http) = await StartAsync();
        await using var _ = hub; using var __ = http;
        string dir = TestPaths.NewTempDir();
        var full = hub.Files["model.safetensors"];
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors.part"), full[..123_456]);
        var files = await d.ListFilesAsync("owner/name", "main");
        Assert.True(await d.DownloadAsync("owner/name", "main", files.Single(f => f.Path == "model.safetensors"), dir));
        Assert.Equal(full, File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors.part")));
        Assert.Contains("model.safetensors bytes=123456-", hub.Requests);
    }

    [Fact]
    public async Task CorruptedFileIsDetectedReportedAndNotKept()
    {
        var (hub, d, http) = await StartAsync();
        await using var _ = hub; using var __ = http;
        var bad = (byte[])hub.Files["model.safetensors"].Clone();
        bad[1000] ^= 0xFF;
        hub.Served["model.safetensors"] = bad;
        var badJson = Encoding.UTF8.GetBytes("{\"model_type\":\"qwen3\"}"); // same length, different content
        hub.Served["config.json"] = badJson;
        string dir = TestPaths.NewTempDir();
        var files = await d.ListFilesAsync("owner/name", "main");

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => d.DownloadAsync("owner/name", "main", files.Single(f => f.Path == "model.safetensors"), dir));
        Assert.Contains("sha256", e.Message);
        var g = await Assert.ThrowsAsync<InvalidDataException>(() => d.DownloadAsync("owner/name", "main", files.Single(f => f.Path == "config.json"), dir));
        Assert.Contains("git blob id", g.Message);
        Assert.Empty(Directory.GetFiles(dir));
    }

    [Fact]
    public void HostileFileListsAndRepoNamesAreRefused()
    {
        Assert.Throws<InvalidDataException>(() => HubDownloader.ParseFileList(Encoding.UTF8.GetBytes("{\"siblings\":[{\"rfilename\":\"../evil\"}]}"), "u"));
        Assert.Throws<InvalidDataException>(() => HubDownloader.ParseFileList(Encoding.UTF8.GetBytes("{\"nope\":1}"), "u"));
        Assert.Throws<InvalidDataException>(() => HubDownloader.ParseFileList(Encoding.UTF8.GetBytes("not json"), "u"));
        Assert.True(HubDownloader.Glob("*.gguf", "a-q4_k_m.gguf"));
        Assert.False(HubDownloader.Glob("*.gguf", "a.gguf.part"));
    }
}
