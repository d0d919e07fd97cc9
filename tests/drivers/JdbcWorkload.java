// The driver-matrix workload (README.md) for the PostgreSQL JDBC driver (pgjdbc) with its default
// settings: prepareThreshold 5, so a PreparedStatement executed for the fifth time is prepared
// server-side as S_N and executed by name from then on; autocommit on outside setAutoCommit(false).
//
// A single-file program for Java 11+'s source launcher, run WITHOUT the driver on the class path:
//
//   java JdbcWorkload.java --jdbc-jar /usr/share/java/postgresql.jar --host DIR --port N ...
//
// pgjdbc speaks TCP only, and the servers here listen on Unix sockets, so the driver is given a
// SocketFactory (its socketFactory connection property) that opens the Unix socket instead. pgjdbc
// loads that class by name from its own class loader, which cannot see classes compiled by the source
// launcher; so the driver is loaded here from the jar by a class loader whose parent is this
// program's. That is plumbing only: the connection properties are the driver's defaults.

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.net.InetAddress;
import java.net.Socket;
import java.net.URL;
import java.net.URLClassLoader;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.sql.Connection;
import java.sql.Driver;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import javax.net.SocketFactory;

public final class JdbcWorkload {
  static final String ADD = "SELECT ?::int + ?::int AS sum";
  static final String DIV = "SELECT 1000 / ?::int AS quotient";
  static final String INSERT = "INSERT INTO driver_matrix (id, client, val) VALUES (?::int, ?::int, ?::text)";
  static final String GET = "SELECT val FROM driver_matrix WHERE id = ?::int";
  static final String ROWS =
      "SELECT n, 'row ' || n AS label, round(n * ?::int / 4.0, 2) AS quarter, mod(n, 2) = 0 AS even,"
          + " CASE WHEN mod(n, 3) = 0 THEN NULL ELSE n * 10 END AS maybe,"
          + " timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes' AS at"
          + " FROM generate_series(1, ?::int) AS n ORDER BY n";
  static final String COUNT =
      "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix WHERE client = ?::int";
  static final String TOTAL = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix";

  static final DateTimeFormatter ISO_UTC = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss'Z'");

  /** pgjdbc's socketFactory: its argument (socketFactoryArg) is the Unix socket's path. */
  public static final class UnixSocketFactory extends SocketFactory {
    private final String path;

    public UnixSocketFactory(String path) {
      this.path = path;
    }

    // pgjdbc connects the socket itself unless it is connected already, as this one is.
    @Override
    public Socket createSocket() throws IOException {
      return new UnixSocket(SocketChannel.open(UnixDomainSocketAddress.of(path)));
    }

    @Override
    public Socket createSocket(String host, int port) throws IOException {
      return createSocket();
    }

    @Override
    public Socket createSocket(String host, int port, InetAddress local, int localPort) throws IOException {
      return createSocket();
    }

    @Override
    public Socket createSocket(InetAddress host, int port) throws IOException {
      return createSocket();
    }

    @Override
    public Socket createSocket(InetAddress host, int port, InetAddress local, int localPort)
        throws IOException {
      return createSocket();
    }
  }

  /** A java.net.Socket over a connected Unix-domain SocketChannel; TCP options are no-ops. */
  static final class UnixSocket extends Socket {
    private final SocketChannel channel;

    UnixSocket(SocketChannel channel) {
      this.channel = channel;
    }

    @Override
    public boolean isConnected() {
      return channel.isConnected();
    }

    @Override
    public boolean isClosed() {
      return !channel.isOpen();
    }

    @Override
    public InputStream getInputStream() {
      return Channels.newInputStream(channel);
    }

    @Override
    public OutputStream getOutputStream() {
      return Channels.newOutputStream(channel);
    }

    @Override
    public void setTcpNoDelay(boolean on) {}

    @Override
    public void setKeepAlive(boolean on) {}

    @Override
    public void setSoTimeout(int timeout) {}

    @Override
    public int getSoTimeout() {
      return 0;
    }

    @Override
    public void shutdownInput() throws IOException {
      channel.shutdownInput();
    }

    @Override
    public void shutdownOutput() throws IOException {
      channel.shutdownOutput();
    }

    @Override
    public synchronized void close() throws IOException {
      channel.close();
    }
  }

  static final class Args {
    String jdbcJar = "/usr/share/java/postgresql.jar";
    String host;
    int port;
    String dbname;
    String user;
    int clients = 8;
    int iterations = 100;
    // --probe-settings a,b: connect once with --connect-properties (name=value|name=value) and print
    // each setting's current_setting() on a line of its own, instead of the workload.
    String[] probeSettings;
    // --stale-scenario alter|type --table T: stale_statements_test.cpp's scenario instead of the workload.
    String staleScenario;
    String table;
    final Properties connectProperties = new Properties();
  }

  static Args parse(String[] argv) {
    Map<String, String> values = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) throw new IllegalArgumentException("unexpected argument " + argv[i]);
      values.put(argv[i].substring(2), argv[i + 1]);
    }
    if (argv.length % 2 != 0) throw new IllegalArgumentException("missing value for " + argv[argv.length - 1]);
    Args args = new Args();
    args.jdbcJar = values.getOrDefault("jdbc-jar", args.jdbcJar);
    args.host = required(values, "host");
    args.port = Integer.parseInt(required(values, "port"));
    args.dbname = required(values, "dbname");
    args.user = required(values, "user");
    args.clients = Integer.parseInt(values.getOrDefault("clients", "8"));
    args.iterations = Integer.parseInt(values.getOrDefault("iterations", "100"));
    if (args.iterations < 10 || args.iterations > 50000) {
      throw new IllegalArgumentException("--iterations must be 10..50000");
    }
    if (values.containsKey("probe-settings")) args.probeSettings = values.get("probe-settings").split(",");
    args.staleScenario = values.get("stale-scenario");
    args.table = values.get("table");
    for (String property : values.getOrDefault("connect-properties", "").split("\\|")) {
      int equals = property.indexOf('=');
      if (equals > 0) args.connectProperties.setProperty(property.substring(0, equals), property.substring(equals + 1));
    }
    return args;
  }

  static String required(Map<String, String> values, String name) {
    String value = values.get(name);
    if (value == null) throw new IllegalArgumentException("--" + name + " is required");
    return value;
  }

  static String render(Object value) {
    if (value == null) return "NULL";
    if (value instanceof Boolean) return ((Boolean) value) ? "t" : "f";
    if (value instanceof BigDecimal) return ((BigDecimal) value).toPlainString();
    if (value instanceof OffsetDateTime) {
      return ((OffsetDateTime) value).withOffsetSameInstant(ZoneOffset.UTC).format(ISO_UTC);
    }
    return value.toString();
  }

  private final Driver driver;
  private final Args args;

  JdbcWorkload(Driver driver, Args args) {
    this.driver = driver;
    this.args = args;
  }

  Connection connect() throws SQLException {
    Properties properties = new Properties();
    properties.putAll(args.connectProperties);
    properties.setProperty("user", args.user);
    // A host that is a directory is a Unix socket's; any other is connected over TCP by pgjdbc.
    String host = "localhost";
    if (args.host.startsWith("/")) {
      properties.setProperty("socketFactory", UnixSocketFactory.class.getName());
      properties.setProperty("socketFactoryArg", args.host + "/.s.PGSQL." + args.port);
    } else {
      host = args.host;
    }
    Connection conn = driver.connect("jdbc:postgresql://" + host + ":" + args.port + "/" + args.dbname, properties);
    if (conn == null) throw new SQLException("the driver did not accept the URL");
    return conn;
  }

  /** The first column of the only row (null when there is no row). */
  static Object one(PreparedStatement statement) throws SQLException {
    try (ResultSet rs = statement.executeQuery()) {
      return rs.next() ? rs.getObject(1) : null;
    }
  }

  /** Runs a statement that should fail and returns its SQLSTATE. */
  static String expectError(PreparedStatement statement) {
    try {
      statement.execute();
      return "none";
    } catch (SQLException e) {
      return e.getSQLState();
    }
  }

  void runClient(int client, List<String> lines) throws SQLException {
    int base = (client + 1) * 100000;
    try (Connection conn = connect();
        PreparedStatement add = conn.prepareStatement(ADD);
        PreparedStatement div = conn.prepareStatement(DIV);
        PreparedStatement insert = conn.prepareStatement(INSERT);
        PreparedStatement get = conn.prepareStatement(GET);
        PreparedStatement rows = conn.prepareStatement(ROWS);
        PreparedStatement count = conn.prepareStatement(COUNT)) {
      String prefix = "c" + client + " i";
      for (int i = 0; i < args.iterations; ++i) {
        int phase = i % 25;
        add.setInt(1, i);
        add.setInt(2, client);
        Object total = one(add);
        div.setInt(1, i + 1);
        Object quotient = one(div);
        conn.setAutoCommit(false);
        insert.setInt(1, base + i);
        insert.setInt(2, client);
        insert.setString(3, "c" + client + "-i" + i);
        insert.executeUpdate();
        String outcome;
        if (phase == 24) {
          conn.rollback();
          outcome = "rollback";
        } else {
          conn.commit();
          outcome = "commit";
        }
        conn.setAutoCommit(true);
        get.setInt(1, base + i);
        Object val = one(get);
        lines.add(prefix + i + " sum=" + render(total) + " quotient=" + render(quotient) + " " + outcome
            + " val=" + render(val));
        rows.setInt(1, client + 1);
        rows.setInt(2, 1 + i % 3);
        try (ResultSet rs = rows.executeQuery()) {
          while (rs.next()) {
            lines.add(prefix + i + " row n=" + render(rs.getObject(1)) + " label=" + render(rs.getObject(2))
                + " quarter=" + render(rs.getObject(3)) + " even=" + render(rs.getObject(4))
                + " maybe=" + render(rs.getObject(5)) + " at=" + render(rs.getObject(6, OffsetDateTime.class)));
          }
        }
        if (phase == 10) {
          conn.setAutoCommit(false);
          insert.setInt(1, base + 50000 + i);
          insert.setInt(2, client);
          insert.setString(3, "doomed");
          insert.executeUpdate();
          div.setInt(1, 0);
          String state = expectError(div);
          conn.rollback();
          conn.setAutoCommit(true);
          get.setInt(1, base + 50000 + i);
          lines.add(prefix + i + " error-in-transaction sqlstate=" + state + " val=" + render(one(get)));
        }
        if (phase == 16) {
          div.setInt(1, 0);
          lines.add(prefix + i + " error-outside-transaction sqlstate=" + expectError(div));
        }
        if (phase == 20) {
          conn.setAutoCommit(false);
          insert.setInt(1, base + i);
          insert.setInt(2, client);
          insert.setString(3, "duplicate");
          String state = expectError(insert);
          conn.rollback();
          conn.setAutoCommit(true);
          get.setInt(1, base + i);
          lines.add(prefix + i + " unique-violation sqlstate=" + state + " val=" + render(one(get)));
        }
      }
      count.setInt(1, client);
      try (ResultSet rs = count.executeQuery()) {
        rs.next();
        lines.add("c" + client + " end rows=" + render(rs.getObject(1)) + " ids=" + render(rs.getObject(2)));
      }
    }
  }

  int run() throws Exception {
    List<List<String>> transcripts = new ArrayList<>();
    List<String> failures = new ArrayList<>();
    List<Thread> threads = new ArrayList<>();
    for (int c = 0; c < args.clients; ++c) {
      List<String> lines = new ArrayList<>();
      transcripts.add(lines);
      int client = c;
      threads.add(new Thread(() -> {
        try {
          runClient(client, lines);
        } catch (Exception e) {  // reported below; the other clients go on
          StringWriter trace = new StringWriter();
          e.printStackTrace(new PrintWriter(trace));
          synchronized (failures) {
            failures.add("client " + client + ":\n" + trace);
          }
        }
      }));
    }
    for (Thread thread : threads) thread.start();
    for (Thread thread : threads) thread.join();

    StringBuilder out = new StringBuilder();
    out.append("driver-matrix clients=").append(args.clients).append(" iterations=").append(args.iterations)
        .append('\n');
    for (List<String> lines : transcripts) {
      for (String line : lines) out.append(line).append('\n');
    }
    if (failures.isEmpty()) {
      try (Connection conn = connect();
          Statement statement = conn.createStatement();
          ResultSet rs = statement.executeQuery(TOTAL)) {
        rs.next();
        out.append("total rows=").append(render(rs.getObject(1))).append(" ids=").append(render(rs.getObject(2)))
            .append('\n');
      }
    }
    System.out.print(out);
    System.out.flush();
    for (String failure : failures) System.err.print(failure);
    return failures.isEmpty() ? 0 : 1;
  }

  int probeSettings() throws SQLException {
    try (Connection conn = connect();
        PreparedStatement statement = conn.prepareStatement("SELECT current_setting(?)")) {
      for (String name : args.probeSettings) {
        statement.setString(1, name);
        System.out.println(one(statement));
      }
    }
    return 0;
  }

  /** A query's rows (" | 1 x"), or its SQLSTATE. */
  static String rows(Connection conn, String query, String param) {
    try (PreparedStatement statement = conn.prepareStatement(query)) {
      statement.setString(1, param);
      StringBuilder out = new StringBuilder();
      try (ResultSet rs = statement.executeQuery()) {
        int columns = rs.getMetaData().getColumnCount();
        while (rs.next()) {
          out.append(" |");
          for (int i = 1; i <= columns; ++i) out.append(' ').append(render(rs.getObject(i)));
        }
      }
      return out.toString();
    } catch (SQLException e) {
      return " ERROR " + e.getSQLState();
    }
  }

  static int pid(Connection hog) throws SQLException {
    try (Statement statement = hog.createStatement();
        ResultSet rs = statement.executeQuery("SELECT pg_backend_pid()")) {
      rs.next();
      return rs.getInt(1);
    }
  }

  /**
   * Two clients prepare a query on a pool's two servers, another changes the table under it, and a
   * new client runs the query: once on one server (the other held), in a transaction, then Binding
   * it on the other.
   */
  int staleScenario() throws SQLException {
    String t = args.table;
    boolean type = args.staleScenario.equals("type");
    String query = "SELECT * FROM " + t + (type ? " WHERE m = ?" : " WHERE id = ?");
    String param = type ? "a" : "1";
    String[] setup = type
        ? new String[] {"DROP TABLE IF EXISTS " + t, "DROP TYPE IF EXISTS " + t + "_mood",
            "CREATE TYPE " + t + "_mood AS ENUM ('a', 'b')", "CREATE TABLE " + t + " (id int, m " + t + "_mood)",
            "INSERT INTO " + t + " VALUES (1, 'a')"}
        : new String[] {"DROP TABLE IF EXISTS " + t, "CREATE TABLE " + t + " (id int, val text)",
            "INSERT INTO " + t + " VALUES (1, 'x')"};
    String[] change = type
        ? new String[] {"DROP TYPE " + t + "_mood CASCADE", "CREATE TYPE " + t + "_mood AS ENUM ('a', 'b')",
            "ALTER TABLE " + t + " ADD COLUMN m " + t + "_mood", "UPDATE " + t + " SET m = 'a'"}
        : new String[] {"ALTER TABLE " + t + " ADD COLUMN note text"};
    try (Connection ddl = connect(); Connection hog1 = connect(); Connection hog2 = connect();
        Connection a1 = connect(); Connection a2 = connect(); Connection b = connect();
        Statement statement = ddl.createStatement()) {
      for (String sql : setup) statement.execute(sql);
      a1.setAutoCommit(false);
      System.out.println("a1" + rows(a1, query, param));
      System.out.println("a2" + rows(a2, query, param));
      a1.commit();
      for (String sql : change) statement.execute(sql);
      hog1.setAutoCommit(false);
      int held = pid(hog1);
      // pgjdbc parses again by itself after a 0A000 in autocommit mode: not inside a transaction.
      b.setAutoCommit(false);
      System.out.println("b" + rows(b, query, param));
      b.commit();
      b.setAutoCommit(true);
      hog1.commit();
      hog2.setAutoCommit(false);
      pid(hog2);
      boolean hog1Held = pid(hog1) == held;
      (hog1Held ? hog1 : hog2).commit();
      System.out.println("b" + rows(b, query, param));
      (hog1Held ? hog2 : hog1).commit();
    }
    return 0;
  }

  public static void main(String[] argv) throws Exception {
    Args args;
    try {
      args = parse(argv);
    } catch (IllegalArgumentException e) {
      System.err.println("JdbcWorkload: " + e.getMessage());
      System.exit(2);
      return;
    }
    File jar = new File(args.jdbcJar);
    if (!jar.isFile()) {
      System.err.println("JdbcWorkload: no JDBC driver at " + jar + " (Debian package libpostgresql-jdbc-java)");
      System.exit(2);
    }
    URLClassLoader loader = new URLClassLoader(new URL[] {jar.toURI().toURL()}, JdbcWorkload.class.getClassLoader());
    Driver driver = (Driver) loader.loadClass("org.postgresql.Driver").getDeclaredConstructor().newInstance();
    JdbcWorkload workload = new JdbcWorkload(driver, args);
    if (args.staleScenario != null) System.exit(workload.staleScenario());
    System.exit(args.probeSettings != null ? workload.probeSettings() : workload.run());
  }
}
