%% Erlang/OTP reference peer for the flock actor-runtime micro-benchmarks
%% (spawn, ring, fan-out, skynet). Compiled with erlc and run by
%% tests/bench/peers/run.sh (erl -noshell +S 2 +P 2000000) so that
%% `make bench` can compare the C runtime against BEAM processes.
%% Prints `figure erlang_<name> <value> <unit>` lines.
-module(flock_peers).
-export([main/0]).

-define(SPAWN_COUNT, 1000000).
-define(RING_SIZE, 1000).
-define(RING_HOPS, 10000000).
-define(FANOUT_COUNT, 100000).
-define(SKYNET_LEAVES, 1000000).
-define(SKYNET_DIV, 10).
-define(SKYNET_SUM, 499999500000).

main() ->
    try
        bench_spawn(),
        bench_ring(),
        bench_fanout(),
        bench_skynet(),
        halt(0)
    catch
        Class:Reason:Stack ->
            io:format(standard_error, "erlang peer: ~p:~p~n~p~n",
                      [Class, Reason, Stack]),
            halt(1)
    end.

%% ---------------------------------------------------------------- helpers

figure(Name, Value, Unit) ->
    io:format("figure erlang_~s ~s ~s~n", [Name, Value, Unit]).

now_us() ->
    erlang:monotonic_time(microsecond).

seconds(Us) ->
    io_lib:format("~.3f", [Us / 1.0e6]).

per_second(N, Us) ->
    integer_to_list(round(N * 1.0e6 / Us)).

%% VmRSS of the emulator (this OS process) in bytes.
rss_bytes() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) * 1024.

%% Every spawned process bumps a shared counter once it runs; the one that
%% brings it to N tells the parent, so "ready" means all N have started.
mark_started(Counter, N, Parent) ->
    case atomics:add_get(Counter, 1, 1) of
        N -> Parent ! all_started, ok;
        _ -> ok
    end.

wait_started() ->
    receive all_started -> ok end.

%% Wait until the processes we told to stop are gone.
wait_process_count(Max) ->
    case erlang:system_info(process_count) =< Max of
        true -> ok;
        false -> timer:sleep(5), wait_process_count(Max)
    end.

%% ------------------------------------------------------------------ spawn
%% 1,000,000 idle processes, each parked in receive. Time = until every
%% process has started; memory = VmRSS delta / count.

bench_spawn() ->
    erlang:garbage_collect(),
    Parent = self(),
    Counter = atomics:new(1, []),
    Baseline = erlang:system_info(process_count),
    Before = rss_bytes(),
    T0 = now_us(),
    Pids = spawn_idle(?SPAWN_COUNT, Counter, Parent, []),
    wait_started(),
    T1 = now_us(),
    After = rss_bytes(),
    figure("spawn_seconds", seconds(T1 - T0), "s"),
    figure("spawn_bytes_per_process",
           integer_to_list((After - Before) div ?SPAWN_COUNT), "B"),
    lists:foreach(fun(P) -> P ! stop end, Pids),
    wait_process_count(Baseline).

spawn_idle(0, _Counter, _Parent, Acc) ->
    Acc;
spawn_idle(K, Counter, Parent, Acc) ->
    Pid = spawn(fun() -> idle(Counter, Parent) end),
    spawn_idle(K - 1, Counter, Parent, [Pid | Acc]).

idle(Counter, Parent) ->
    mark_started(Counter, ?SPAWN_COUNT, Parent),
    receive stop -> ok end.

%% ------------------------------------------------------------------- ring
%% 1,000 processes in a ring; one token carries the remaining hop count and
%% is decremented on every forward.

bench_ring() ->
    erlang:garbage_collect(),
    Parent = self(),
    Baseline = erlang:system_info(process_count),
    Pids = [spawn(fun() -> ring_init(Parent) end)
            || _ <- lists:seq(1, ?RING_SIZE)],
    connect(Pids, hd(Pids)),
    T0 = now_us(),
    hd(Pids) ! ?RING_HOPS,
    receive ring_done -> ok end,
    T1 = now_us(),
    figure("ring_hops_per_second", per_second(?RING_HOPS, T1 - T0), "hops/s"),
    lists:foreach(fun(P) -> P ! stop end, Pids),
    wait_process_count(Baseline).

connect([P], First) ->
    P ! {next, First};
connect([P | [Q | _] = Rest], First) ->
    P ! {next, Q},
    connect(Rest, First).

ring_init(Parent) ->
    receive {next, Next} -> ring_node(Next, Parent) end.

ring_node(Next, Parent) ->
    receive
        0 ->
            Parent ! ring_done,
            ring_node(Next, Parent);
        N when is_integer(N) ->
            Next ! N - 1,
            ring_node(Next, Parent);
        stop ->
            ok
    end.

%% ---------------------------------------------------------------- fan-out
%% One sender process sends an integer to each of 100,000 receivers; each
%% receiver prepends it to its own list and sends `done` to the collector
%% (this process). Spawning is outside the timing.

bench_fanout() ->
    erlang:garbage_collect(),
    Parent = self(),
    Counter = atomics:new(1, []),
    Baseline = erlang:system_info(process_count),
    Receivers = [spawn(fun() -> receiver_start(Counter, Parent) end)
                 || _ <- lists:seq(1, ?FANOUT_COUNT)],
    wait_started(),
    Sender = spawn(fun() -> sender(Receivers) end),
    First = fanout_round(Sender, 1),
    Warm = fanout_round(Sender, 2),
    figure("fanout_first_msgs_per_second",
           per_second(?FANOUT_COUNT, First), "msgs/s"),
    figure("fanout_warm_msgs_per_second",
           per_second(?FANOUT_COUNT, Warm), "msgs/s"),
    Sender ! stop,
    lists:foreach(fun(P) -> P ! {stop, Parent} end, Receivers),
    Kept = collect_kept(?FANOUT_COUNT, 0),
    Kept =:= 2 * ?FANOUT_COUNT
        orelse error({fanout_kept, Kept, 2 * ?FANOUT_COUNT}),
    wait_process_count(Baseline).

fanout_round(Sender, Value) ->
    T0 = now_us(),
    Sender ! {go, Value},
    collect_done(?FANOUT_COUNT),
    now_us() - T0.

collect_done(0) -> ok;
collect_done(K) -> receive done -> collect_done(K - 1) end.

collect_kept(0, Sum) -> Sum;
collect_kept(K, Sum) -> receive {kept, N} -> collect_kept(K - 1, Sum + N) end.

sender(Receivers) ->
    receive
        {go, Value} ->
            send_all(Receivers, Value),
            sender(Receivers);
        stop ->
            ok
    end.

send_all([], _Value) -> ok;
send_all([R | Rest], Value) -> R ! Value, send_all(Rest, Value).

receiver_start(Counter, Parent) ->
    mark_started(Counter, ?FANOUT_COUNT, Parent),
    receiver([], Parent).

receiver(State, Collector) ->
    receive
        X when is_integer(X) ->
            Collector ! done,
            receiver([X | State], Collector);
        {stop, From} ->
            From ! {kept, length(State)}
    end.

%% ----------------------------------------------------------------- skynet
%% Classic skynet: tree of fan-out 10 with 1,000,000 leaves; leaves send
%% their number, parents sum their children and send the sum up.

bench_skynet() ->
    erlang:garbage_collect(),
    Parent = self(),
    T0 = now_us(),
    spawn(fun() -> skynet(Parent, 0, ?SKYNET_LEAVES, ?SKYNET_DIV) end),
    Sum = receive {sky, S} -> S end,
    T1 = now_us(),
    Sum =:= ?SKYNET_SUM orelse error({skynet_sum, Sum, ?SKYNET_SUM}),
    figure("skynet_seconds", seconds(T1 - T0), "s").

skynet(Parent, Num, 1, _Div) ->
    Parent ! {sky, Num};
skynet(Parent, Num, Size, Div) ->
    Self = self(),
    Sub = Size div Div,
    spawn_children(Self, Num, Sub, Div, 0),
    Parent ! {sky, sum_children(Div, 0)}.

spawn_children(_Self, _Num, _Sub, Div, Div) ->
    ok;
spawn_children(Self, Num, Sub, Div, I) ->
    spawn(fun() -> skynet(Self, Num + I * Sub, Sub, Div) end),
    spawn_children(Self, Num, Sub, Div, I + 1).

sum_children(0, Sum) -> Sum;
sum_children(K, Sum) -> receive {sky, N} -> sum_children(K - 1, Sum + N) end.
