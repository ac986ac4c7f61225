using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace EdgeLM.Formats.HuggingFace;

/// <summary>One file of a Hub repository: size and checksums where the Hub gives them.</summary>
/// <param name="Sha256">The LFS object's SHA-256 (large files).</param>
/// <param name="GitBlobId">The git blob SHA-1 (every file); checked where no SHA-256 is given.</param>
public sealed record HubFile(string Path, long? Size, string? Sha256, string? GitBlobId);

/// <summary>
/// Downloads a model repository from the Hugging Face Hub (or a mirror): the file list from
/// <c>{endpoint}/api/models/{repo}/revision/{rev}?blobs=true</c>, each file from <c>{endpoint}/{repo}/resolve/{rev}/{path}</c>.
/// A download goes to <c>path.part</c> first and resumes from it with a Range request; size and checksum are verified
/// before the file takes its name, and a file that fails them is deleted, never kept. HF_ENDPOINT and HF_TOKEN are
/// honoured as by the Hub's own clients.
/// </summary>
public sealed class HubDownloader
{
    public const string DefaultEndpoint = "https://huggingface.co";
    public const string EndpointVariable = "HF_ENDPOINT";
    public const string TokenVariable = "HF_TOKEN";

    /// <summary>What <c>edgelm pull</c> fetches without --include: enough to load and tokenize a safetensors checkpoint.</summary>
    public static readonly string[] DefaultPatterns =
    [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
        "special_tokens_map.json", "added_tokens.json", "qwen.tiktoken", "*.safetensors", "*.safetensors.index.json",
    ];

    private readonly HttpClient _http;
    private readonly string? _token;

    public HubDownloader(HttpClient http, string? endpoint = null, string? token = null)
    {
        _http = http;
        Endpoint = (endpoint ?? (Environment.GetEnvironmentVariable(EndpointVariable) is { Length: > 0 } e ? e : DefaultEndpoint)).TrimEnd('/');
        _token = token ?? (Environment.GetEnvironmentVariable(TokenVariable) is { Length: > 0 } t ? t : null);
    }

    public string Endpoint { get; }

    public async Task<IReadOnlyList<HubFile>> ListFilesAsync(string repo, string revision, CancellationToken cancel = default)
    {
        ValidateRepo(repo);
        string url = $"{Endpoint}/api/models/{repo}/revision/{Uri.EscapeDataString(revision)}?blobs=true";
        using var response = await SendAsync(url, null, cancel).ConfigureAwait(false);
        byte[] body = await response.Content.ReadAsByteArrayAsync(cancel).ConfigureAwait(false);
        return ParseFileList(body, url);
    }

    internal static IReadOnlyList<HubFile> ParseFileList(byte[] body, string url)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body); }
        catch (JsonException e) { throw new InvalidDataException($"{url}: response is not JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("siblings", out var siblings)
                || siblings.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{url}: response has no 'siblings' list");
            var files = new List<HubFile>();
            foreach (var s in siblings.EnumerateArray())
            {
                if (s.ValueKind != JsonValueKind.Object || !s.TryGetProperty("rfilename", out var name) || name.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{url}: a sibling has no 'rfilename'");
                string path = name.GetString()!;
                ValidatePath(path);
                long? size = s.TryGetProperty("size", out var sz) && sz.TryGetInt64(out long n) && n >= 0 ? n : null;
                string? sha = null;
                if (s.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                {
                    if (lfs.TryGetProperty("sha256", out var h) && h.ValueKind == JsonValueKind.String) sha = h.GetString()!.ToLowerInvariant();
                    if (lfs.TryGetProperty("size", out var lsz) && lsz.TryGetInt64(out long ln) && ln >= 0) size = ln;
                }
                string? blob = s.TryGetProperty("blobId", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()!.ToLowerInvariant() : null;
                if (sha != null && !IsHex(sha, 64)) throw new InvalidDataException($"{url}: '{path}' has a malformed sha256 '{sha}'");
                if (blob != null && !IsHex(blob, 40)) blob = null; // not a git SHA-1 (e.g. a SHA-256 repository): nothing to check against
                files.Add(new HubFile(path, size, sha, blob));
            }
            return files;
        }
    }

    /// <summary>The files matching any of <paramref name="patterns"/> (glob: * and ?; a pattern without '/' also matches the file name).</summary>
    public static IReadOnlyList<HubFile> Select(IReadOnlyList<HubFile> files, IReadOnlyList<string>? patterns)
    {
        var use = patterns is { Count: > 0 } ? patterns : DefaultPatterns;
        return [.. files.Where(f => use.Any(p => Glob(p, f.Path) || (!p.Contains('/') && Glob(p, System.IO.Path.GetFileName(f.Path)))))];
    }

    /// <summary>Downloads <paramref name="file"/> into <paramref name="outputDir"/>; returns false when a verified copy was already there.</summary>
    public async Task<bool> DownloadAsync(string repo, string revision, HubFile file, string outputDir,
        Action<long, long?>? progress = null, CancellationToken cancel = default)
    {
        ValidateRepo(repo);
        ValidatePath(file.Path);
        string target = System.IO.Path.GetFullPath(System.IO.Path.Combine(outputDir, file.Path));
        string part = target + ".part";
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
        if (File.Exists(target) && file.Size is long known && new FileInfo(target).Length == known && (file.Sha256 != null || file.GitBlobId != null))
        {
            if (Verify(target, file) == null) return false;
        }

        long have = File.Exists(part) ? new FileInfo(part).Length : 0;
        if (file.Size is long size && have > size) { File.Delete(part); have = 0; }
        string url = $"{Endpoint}/{repo}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}";
        if (file.Size is not long full || have < full)
        {
            using var response = await SendAsync(url, have > 0 ? have : null, cancel).ConfigureAwait(false);
            bool resumed = have > 0 && response.StatusCode == HttpStatusCode.PartialContent;
            if (resumed && response.Content.Headers.ContentRange is { From: long from } && from != have)
                throw new InvalidDataException($"{url}: asked for bytes from {have}, the server sent them from {from}");
            if (!resumed) have = 0; // the server ignored the Range: start over
            await using (var output = new FileStream(part, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            await using (var input = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false))
            {
                var buffer = new byte[1 << 16];
                long done = have;
                int n;
                long lastReport = Environment.TickCount64;
                while ((n = await input.ReadAsync(buffer, cancel).ConfigureAwait(false)) > 0)
                {
                    if (file.Size is long limit && done + n > limit)
                        throw new InvalidDataException($"{file.Path}: the server sent more than the {limit} bytes the file list announced");
                    await output.WriteAsync(buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
                    done += n;
                    if (progress != null && Environment.TickCount64 - lastReport >= 200) { progress(done, file.Size); lastReport = Environment.TickCount64; }
                }
                progress?.Invoke(done, file.Size);
            }
        }
        if (Verify(part, file) is string problem)
        {
            File.Delete(part);
            throw new InvalidDataException($"{file.Path}: {problem}; the corrupted download was deleted, run the command again");
        }
        File.Move(part, target, overwrite: true);
        return true;
    }

    /// <summary>Null when the file has the announced size and checksum, else what is wrong.</summary>
    private static string? Verify(string path, HubFile file)
    {
        long length = new FileInfo(path).Length;
        if (file.Size is long size && length != size) return $"size {length} differs from the announced {size} bytes";
        if (file.Sha256 != null)
        {
            using var stream = File.OpenRead(path);
            string actual = Convert.ToHexStringLower(SHA256.HashData(stream));
            return actual == file.Sha256 ? null : $"sha256 {actual} differs from the announced {file.Sha256}";
        }
        if (file.GitBlobId != null)
        {
            // git's blob id: SHA-1 over "blob <length>\0" followed by the content.
            using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
            sha1.AppendData(Encoding.ASCII.GetBytes($"blob {length}\0"));
            using var stream = File.OpenRead(path);
            var buffer = new byte[1 << 16];
            int n;
            while ((n = stream.Read(buffer)) > 0) sha1.AppendData(buffer, 0, n);
            string actual = Convert.ToHexStringLower(sha1.GetHashAndReset());
            return actual == file.GitBlobId ? null : $"git blob id {actual} differs from the announced {file.GitBlobId}";
        }
        return null;
    }

    private async Task<HttpResponseMessage> SendAsync(string url, long? rangeFrom, CancellationToken cancel)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (_token != null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        if (rangeFrom is long from) request.Headers.Range = new RangeHeaderValue(from, null);
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
        if (response.IsSuccessStatusCode) return response;
        response.Dispose();
        string hint = response.StatusCode switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => _token == null ? " (a gated or private repository: set HF_TOKEN)" : " (check HF_TOKEN's access)",
            HttpStatusCode.NotFound => " (check the repository name and revision)",
            _ => "",
        };
        throw new IOException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}{hint}");
    }

    private static void ValidateRepo(string repo)
    {
        var parts = repo.Split('/');
        if (parts.Length is < 1 or > 2 || parts.Any(p => p.Length == 0 || p is "." or ".." || p.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))))
            throw new ArgumentException($"'{repo}' is not a Hub repository name (owner/name)");
    }

    /// <summary>A hostile file list must not write outside the output folder.</summary>
    private static void ValidatePath(string path)
    {
        if (path.Length == 0 || path.StartsWith('/') || path.Contains('\\') || path.Contains('\0') || System.IO.Path.IsPathRooted(path)
            || path.Split('/').Any(p => p is "" or "." or ".."))
            throw new InvalidDataException($"the file list names an unsafe path '{path}'");
    }

    private static bool IsHex(string s, int length) => s.Length == length && s.All(char.IsAsciiHexDigit);

    internal static bool Glob(string pattern, string text)
    {
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == text[t])) { p++; t++; }
            else if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = t; }
            else if (star >= 0) { p = star + 1; t = ++mark; }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
