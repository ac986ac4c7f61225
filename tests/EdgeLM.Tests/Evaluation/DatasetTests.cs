using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeLM.Evaluation;
using EdgeLM.Tests.Support;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

public sealed class DatasetTests
{
    private static string WriteTask(string task, string file, string content)
    {
        string dir = TestPaths.NewTempDir();
        Directory.CreateDirectory(Path.Combine(dir, task));
        File.WriteAllText(Path.Combine(dir, task, file), content);
        return dir;
    }

    [Fact]
    public void SharedSplitsLoadCompletely()
    {
        var arc = EvalTask.Get("arc_challenge");
        Assert.Equal(1172, TaskDataset.Load(ReferenceParityTests.DatasetsDir, arc, arc.EvalSplit).Count);
        var piqa = EvalTask.Get("piqa");
        var docs = TaskDataset.Load(ReferenceParityTests.DatasetsDir, piqa, piqa.EvalSplit);
        Assert.Equal(1838, docs.Count);
        Assert.All(docs, d => Assert.Equal(2, d.Choices.Count));
    }

    [Fact]
    public void NumericAnswerKeysIndexNumericLabels()
    {
        string row = """{"id":"x","question":"Q?","choices":{"text":["a","b","c"],"label":["1","2","3"]},"answerKey":"3"}""";
        string dir = WriteTask("arc_easy", "test.jsonl", row + "\n");
        var task = EvalTask.Get("arc_easy");
        Assert.Equal(2, TaskDataset.Load(dir, task, task.EvalSplit)[0].Gold);
    }

    [Theory]
    [InlineData("""{"id":"x","question":"Q?","choices":{"text":["a"],"label":["A"]},"answerKey":"B"}""", "answerKey 'B'")]
    [InlineData("""{"id":"x","choices":{"text":["a"],"label":["A"]},"answerKey":"A"}""", "'question'")]
    [InlineData("""{"id":"x","question":"Q?","choices":{"text":["a","b"],"label":["A"]},"answerKey":"A"}""", "choices.label")]
    [InlineData("""not json""", "not valid JSON")]
    public void BadArcRowsNameTheProblem(string row, string expected)
    {
        string dir = WriteTask("arc_challenge", "test.jsonl", row + "\n");
        var task = EvalTask.Get("arc_challenge");
        var e = Assert.Throws<InvalidDataException>(() => TaskDataset.Load(dir, task, task.EvalSplit));
        Assert.Contains(expected, e.Message);
        Assert.Contains("test.jsonl:1", e.Message);
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        string dir = TestPaths.NewTempDir();
        var task = EvalTask.Get("piqa");
        var e = Assert.Throws<FileNotFoundException>(() => TaskDataset.Load(dir, task, task.EvalSplit));
        Assert.Contains(Path.Combine(dir, "piqa", "valid.jsonl"), e.Message);
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.Combine(dir, "piqa")).FullName, "valid.jsonl"), """{"goal":"g","sol1":"a","sol2":"b"}""" + "\n");
        e = Assert.Throws<FileNotFoundException>(() => TaskDataset.Load(dir, task, task.EvalSplit));
        Assert.Contains("valid-labels.lst", e.Message);
        File.WriteAllText(Path.Combine(dir, "piqa", "valid-labels.lst"), "0\n1\n");
        Assert.Contains("2 labels for 1 items", Assert.Throws<InvalidDataException>(() => TaskDataset.Load(dir, task, task.EvalSplit)).Message);
    }

    [Fact]
    public void HellaSwagLabelsMayBeDigitStrings()
    {
        string row = """{"ind":1,"activity_label":"A","ctx_a":"x.","ctx_b":"y","endings":["p","q"],"label":"1"}""";
        string dir = WriteTask("hellaswag", "hellaswag_val.jsonl", row + "\n");
        var task = EvalTask.Get("hellaswag");
        var doc = TaskDataset.Load(dir, task, task.EvalSplit)[0];
        Assert.Equal(1, doc.Gold);
        Assert.Equal("A: x. Y", doc.Query);
        using var logged = JsonDocument.Parse(doc.DocJson);
        Assert.Equal("A: x. Y", logged.RootElement.GetProperty("query").GetString());
        Assert.Equal("B", logged.RootElement.GetProperty("answer_letter").GetString());
    }

    [Theory]
    [InlineData("hello WORLD", "Hello world")]
    [InlineData("éCOLE", "École")]
    [InlineData("", "")]
    [InlineData("1ABC", "1abc")]
    public void CapitalizeIsPythons(string input, string expected) => Assert.Equal(expected, PythonText.Capitalize(input));

    [Theory]
    [InlineData("  a [title] b ", "a. b")]
    [InlineData("[header] How to x [title] Do y. [step] z", " How to x. Do y. z")] // the tag's removal leaves the space
    [InlineData("a  b   c", "a b  c")] // one pass of replace("  ", " "), as Python
    [InlineData("keep [unclosed", "keep [unclosed")]
    public void HellaSwagPreprocessIsUtilsPy(string input, string expected) => Assert.Equal(expected, PythonText.HellaSwagPreprocess(input));

    /// <summary>Serves the datasets-server rows layout on loopback, paging like the real API.</summary>
    private sealed class RowsServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        public string Endpoint { get; }
        public List<string> Requests { get; } = [];

        public RowsServer(IReadOnlyList<string> rows, string dataset)
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            Endpoint = $"http://127.0.0.1:{port}";
            _listener.Prefixes.Add(Endpoint + "/");
            _listener.Start();
            _loop = Task.Run(async () =>
            {
                while (_listener.IsListening)
                {
                    HttpListenerContext ctx;
                    try { ctx = await _listener.GetContextAsync(); } catch (Exception) { return; }
                    var q = ctx.Request.QueryString;
                    lock (Requests) Requests.Add(ctx.Request.Url!.PathAndQuery);
                    int offset = int.Parse(q["offset"]!), length = int.Parse(q["length"]!);
                    byte[] body;
                    if (ctx.Request.Url!.AbsolutePath != "/rows" || q["dataset"] != dataset) { ctx.Response.StatusCode = 404; body = []; }
                    else
                    {
                        var page = rows.Skip(offset).Take(length).Select((r, i) => $"{{\"row_idx\":{offset + i},\"row\":{r},\"truncated_cells\":[]}}");
                        body = Encoding.UTF8.GetBytes($"{{\"features\":[],\"rows\":[{string.Join(",", page)}],\"num_rows_total\":{rows.Count},\"num_rows_per_page\":100,\"partial\":false}}");
                    }
                    ctx.Response.OutputStream.Write(body);
                    ctx.Response.Close();
                }
            });
        }

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
            try { _loop.Wait(2000); } catch (AggregateException) { }
        }
    }

    [Fact]
    public async Task DownloadPagesTheRowsApiIntoTheLocalLayout()
    {
        // 230 PIQA-shaped rows (three pages) with labels inline, as the Hugging Face copy has them.
        var rows = Enumerable.Range(0, 230).Select(i => $"{{\"goal\":\"goal {i} ü\",\"sol1\":\"a{i}\",\"sol2\":\"b{i}\",\"label\":{i % 2}}}").ToList();
        using var server = new RowsServer(rows, "baber/piqa");
        string dir = TestPaths.NewTempDir();
        using var http = new HttpClient();
        var task = EvalTask.Get("piqa");
        int n = await new DatasetDownloader(http, server.Endpoint).DownloadAsync(dir, task, task.EvalSplit);
        Assert.Equal(230, n);
        Assert.Equal(3, server.Requests.Count);
        Assert.Contains("offset=200&length=100", server.Requests[2]);
        var docs = TaskDataset.Load(dir, task, task.EvalSplit);
        Assert.Equal(230, docs.Count);
        Assert.Equal("Question: goal 229 ü\nAnswer:", docs[229].Query);
        Assert.Equal(1, docs[229].Gold);
        Assert.Equal(["a7", "b7"], docs[7].Choices);
        Assert.Equal("0\n1\n", File.ReadAllText(Path.Combine(dir, "piqa", "valid-labels.lst"))[..4]);
    }

    [Fact]
    public async Task DownloadEndpointComesFromTheEnvironmentAndErrorsAreClear()
    {
        using var server = new RowsServer([], "someone/else");
        Environment.SetEnvironmentVariable(DatasetDownloader.EndpointVariable, server.Endpoint);
        try
        {
            using var http = new HttpClient();
            var downloader = new DatasetDownloader(http);
            Assert.Equal(server.Endpoint, downloader.Endpoint);
            var task = EvalTask.Get("arc_challenge");
            var e = await Assert.ThrowsAsync<IOException>(() => downloader.DownloadAsync(TestPaths.NewTempDir(), task, task.EvalSplit));
            Assert.Contains("HTTP 404", e.Message);
        }
        finally { Environment.SetEnvironmentVariable(DatasetDownloader.EndpointVariable, null); }
    }
}
