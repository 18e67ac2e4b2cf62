"""The GSD-OCC occupancy node: six cameras and tf in, semantic voxel grids and RViz markers out.

Callbacks only collect: the synchroniser hands complete camera sets to a ``pipeline.prefetch.Prefetcher``.
Its prepare thread decodes the six images (in parallel) and looks up tf at the image stamps while its
inference thread runs the ROS-free OccupancyRunner on the previous set and publishes; each keeps only the
newest set (overwritten sets are counted). Nothing here blocks the executor.

Why this file is long: it is the node, all wiring (parameters, QoS, subscriptions, tf, the two threads,
publishers, diagnostics, stopping); each piece of logic it calls lives in its own module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from rclpy.clock import JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.exceptions import (InvalidParameterValueException, ParameterException,
                               ParameterUninitializedException)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.parameter import Parameter
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from gsdocc_ros.msg import SemanticVoxelGrid
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, CameraFrame
from gsdocc_ros.pipeline.prefetch import Prefetcher
from gsdocc_ros.pipeline.runner import OccupancyRunner, StepResult, load_model
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.ros import image_decode, point_cloud, sync, tf
from gsdocc_ros.ros.conversions import (camera_info_to_intrinsics, grid_to_message, stamp_to_ns,
                                        transform_to_matrix)
from gsdocc_ros.ros.counters import NodeCounter
from gsdocc_ros.ros.diagnostics import build_diagnostics, camera_statuses, mark_degraded
from gsdocc_ros.ros.markers import build_markers_cdr
from gsdocc_ros.ros.command_line import command_line_problem
from gsdocc_ros.ros.params import DEFAULTS, NodeParams, descriptor, validate
from gsdocc_ros.ros.qos import camera_qos, output_qos, overridable
from gsdocc_ros.ros.stages import NodeStage


class SetRejected(Exception):
    """A camera set that cannot be used; the message says why, the key says which counter to raise."""

    def __init__(self, counter: NodeCounter, message: str) -> None:
        super().__init__(message)
        self.counter = counter


@dataclass
class _CameraSet:
    """One synchronised set of image messages in camera order (None for a stale camera), with its arrival time."""

    images: Sequence[Image | CompressedImage | None]
    received: float


@dataclass
class _PreparedSet:
    """A camera set ready for the network: decoded frames, ego pose and stamp, and how long preparing took."""

    frames: list[CameraFrame]
    ego2global: np.ndarray
    stamp_ns: int
    received: float
    prepare_ms: float


class OccupancyNode(Node):
    """Runs GSD-OCC on synchronised surround cameras, with ego motion from tf at the image stamps."""

    def __init__(self, **kwargs) -> None:
        super().__init__("gsdocc", **kwargs)
        self.params: NodeParams = self._declare_parameters()
        p = self.params
        model_cfg = ModelConfig.for_input_size(p.input_height, p.input_width)
        model, source = load_model(p.checkpoint or None, model_cfg, p.allow_random_weights, p.trust_pickle)
        self.runner = OccupancyRunner(model, p.runner_config(), source=source)
        if self.runner.device_warning:
            self.get_logger().warning(self.runner.device_warning)
        if not p.checkpoint:
            self.get_logger().error("*** RUNNING ON RANDOM WEIGHTS: the occupancy output is meaningless "
                                    "(allow_random_weights is set; give 'checkpoint' for real output) ***")
        self.get_logger().info(f"model: {source} on {self.runner.device} ({p.precision}, cadence {p.cadence}, "
                               f"backend {p.backend}{' ' + p.graph_dir if p.graph_dir else ''})")
        if len(p.cameras) != len(CAMERA_NAMES):
            self.get_logger().warning(f"{len(p.cameras)} cameras {list(p.cameras)}: the network was trained on the six "
                                      "nuScenes views only; expect lower accuracy, most where this rig's views "
                                      f"differ from them (image_fit {p.image_fit})")

        self.counters: Counter[str] = Counter()
        self.stage_ms: dict[str, float] = {}
        self.latency_ms = float("nan")
        self._camera_info: dict[str, CameraInfo] = {}
        self._stop = threading.Event()
        self._counter_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._closed = False
        self._decoders = image_decode.decode_executor(len(p.cameras))
        self.prefetcher: Prefetcher[_CameraSet, _PreparedSet] = Prefetcher(
            self._prepare, self._infer, self._on_error,
            on_drop=lambda stage: self._count(NodeCounter.SETS_DROPPED_BUSY))
        self._last_stamp_ns: int | None = None
        self._reported: dict[str, int] = {}
        self._reported_stale: frozenset[int] = frozenset()

        self.tf_buffer = tf.Buffer(cache_time=tf.DEFAULT_CACHE, node=self)
        self.tf_listener = tf.TfListener(self.tf_buffer, self, on_jump=self._on_tf_jump)
        subscribers = []
        for (camera, image_topic, info_topic), kind in zip(p.topics(), p.image_types):
            msg_type = CompressedImage if kind == "compressed" else Image
            subscribers.append(sync.Subscriber(self, msg_type, image_topic, qos_profile=camera_qos(),
                                               qos_overriding_options=overridable()))
            self.create_subscription(CameraInfo, info_topic, lambda msg, cam=camera: self._on_camera_info(cam, msg),
                                     camera_qos(), qos_overriding_options=overridable())
        self.sync = sync.CameraSetSync(subscribers, queue_size=p.sync_queue_size, slop=p.sync_slop_s,
                                       camera_timeout_s=p.camera_timeout_s)
        self.sync.registerCallback(self._on_set)
        # A backwards jump of the node's clock (sim time from a looping bag, or wall time set back) ends the time
        # line: tf from before it, queued images and the temporal cache must all go.
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1), on_clock_change=False),
            post_callback=self._on_clock_jump)
        self.get_logger().info(f"backends: tf {tf.BACKEND}, sync {sync.BACKEND}, "
                               f"jpeg {image_decode.DEFAULT_JPEG_DECODER}, raw images {image_decode.RAW_BACKEND}, "
                               f"point cloud {point_cloud.BACKEND}")

        self.grid_pub, self.marker_pub, self.points_pub = (
            self.create_publisher(msg_type, topic, output_qos(), qos_overriding_options=overridable())
            for msg_type, topic in ((SemanticVoxelGrid, "~/occupancy"), (MarkerArray, "~/markers"),
                                    (PointCloud2, "~/occupied_points")))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        self.prefetcher.start()

    # -- parameters ---------------------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeParams:
        """Declare every parameter with its descriptor (description, range, choices), then validate them together."""
        values = {}
        for name, default in DEFAULTS.items():
            try:
                if isinstance(default, tuple) and not default:  # an empty default cannot carry its type: say it
                    self.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor(name))
                    with contextlib.suppress(ParameterUninitializedException):
                        values[name] = self.get_parameter(name).value
                else:
                    value = self.declare_parameter(name, list(default) if isinstance(default, tuple) else default,
                                                   descriptor(name)).value
                    values[name] = value
            except InvalidParameterValueException:
                raise ValueError(f"parameter '{name}': outside its declared range "
                                 f"({descriptor(name).additional_constraints})") from None
        return validate(values)

    # -- callbacks: collect only ----------------------------------------------------------------------------
    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        self._camera_info[camera] = msg

    def _on_set(self, *images: Image | CompressedImage | None) -> None:
        """A set from the synchroniser (None for stale cameras): replaces whatever the prepare thread has not taken
        yet."""
        self._count(NodeCounter.SETS_IN)
        self.prefetcher.submit(_CameraSet(images=images, received=time.monotonic()))

    def _on_tf_jump(self, seconds_back: float) -> None:
        """The tf listener saw a frame's stamp go back and cleared the buffer."""
        self._count(NodeCounter.TF_BUFFER_CLEARS)

    def _on_clock_jump(self, jump: TimeJump) -> None:
        """The node clock went back: clear tf from the old time line, empty the sync queues, restart the cache."""
        self._count(NodeCounter.CLOCK_JUMPS_BACK)
        now_ns = self.get_clock().now().nanoseconds
        self.get_logger().warning(f"clock jumped back {-jump.delta.nanoseconds / 1e9:.3f} s: tf, camera queues and "
                                  "the temporal cache restart")
        self.tf_listener.restart_if_older(now_ns)
        self.sync.reset()
        self.runner.reset("the node clock went backwards")

    def _count(self, counter: str) -> None:
        """Raise one counter; the callbacks and both threads count, hence the lock."""
        with self._counter_lock:
            self.counters[counter] += 1

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.runner.reset("reset service called")
        response.success, response.message = True, "temporal cache will restart at the next camera set"
        return response

    # -- the two threads ---------------------------------------------------------------------------------------
    def _on_error(self, stage: str, error: Exception) -> None:
        """A set that failed in ``stage``: count why and log it; the threads go on with the next set."""
        if isinstance(error, SetRejected):
            self._count(error.counter)
            self.get_logger().warning(f"camera set skipped: {error}", throttle_duration_sec=5.0)
        elif isinstance(error, torch.OutOfMemoryError):  # one set too big for the device: free, restart history
            self._count(NodeCounter.OUT_OF_MEMORY)
            self.runner.reset("out of memory in the previous set")  # the cache may hold half that set
            if self.runner.device.type == "cuda":
                torch.cuda.empty_cache()
            self.get_logger().error(f"camera set failed: out of memory on {self.runner.device}: {error}",
                                    throttle_duration_sec=5.0)
        else:  # the node must survive any one bad set; the reason is reported
            self._count(NodeCounter.ERRORS)
            self.get_logger().error(f"camera set failed in {stage}: {type(error).__name__}: {error}",
                                    throttle_duration_sec=5.0)

    def _prepare(self, camera_set: _CameraSet) -> _PreparedSet | None:
        """Prepare thread: cadence check, ego pose, decoded frames with their extrinsics; None when skipped."""
        p = self.params
        live = [(camera, msg) for camera, msg in zip(p.cameras, camera_set.images) if msg is not None]
        key = next((i for i, (camera, _) in enumerate(live) if camera == p.key_camera), 0)  # key stale: first live
        stamps = [stamp_to_ns(msg.header.stamp) for _, msg in live]
        key_stamp = stamps[key]
        if self._last_stamp_ns is not None and key_stamp < self._last_stamp_ns:
            self._count(NodeCounter.TIME_JUMPS_BACK)
            self.get_logger().warning(f"camera stamps went back {(self._last_stamp_ns - key_stamp) / 1e9:.3f} s "
                                      "(bag loop?): the temporal cache restarts")
            # the images may come before the tf of the new time line: no look-up may see the old one
            self.tf_listener.restart_if_older(min(stamps))
        self._last_stamp_ns = key_stamp
        if not self.runner.wants(key_stamp):
            self._count(NodeCounter.SETS_SKIPPED_CADENCE)
            return None
        self.get_logger().debug(f"set at {key_stamp / 1e9:.3f} s: decoding, waiting for tf")
        t0 = time.perf_counter()
        images = [self._decoders.submit(image_decode.decode_image, msg) for _, msg in live]  # in parallel
        ego2global = self._lookup(p.fixed_frame, p.ego_frame, key_stamp)
        frames, undecodable = [], []
        for (camera, msg), image, stamp in zip(live, images, stamps):
            try:
                frames.append(self._frame(camera, msg, image, stamp, key_stamp))
            except SetRejected as error:  # a camera whose image cannot be read is left out, as a stale one is
                if error.counter != "decode_errors":
                    raise
                undecodable.append(str(error))
        if undecodable:
            self._count(NodeCounter.DECODE_ERRORS)
            if not frames:
                raise SetRejected(NodeCounter.DECODE_ERRORS, "; ".join(undecodable))
            self.get_logger().warning(f"camera set goes on without: {'; '.join(undecodable)}",
                                      throttle_duration_sec=5.0)
        return _PreparedSet(frames=frames, ego2global=ego2global, stamp_ns=key_stamp, received=camera_set.received,
                            prepare_ms=(time.perf_counter() - t0) * 1e3)

    def _infer(self, prepared: _PreparedSet) -> None:
        """Inference thread: the network on a prepared set, then the messages."""
        self.get_logger().debug(f"set at {prepared.stamp_ns / 1e9:.3f} s: in the network")
        result = self.runner.step(prepared.frames, prepared.ego2global, prepared.stamp_ns)
        if result is None:  # wants() judged before the previous step committed; step knows better
            self._count(NodeCounter.SETS_SKIPPED_CADENCE)
            return
        if len(prepared.frames) < len(self.params.cameras):
            self._count(NodeCounter.GRIDS_DEGRADED)
            if result.grid.camera_mask is None:  # a degraded grid always says what no live camera sees
                result.grid.camera_mask = self.runner.camera_mask(prepared.frames)
        self._publish(result, prepared)

    def _frame(self, camera: str, msg: Image | CompressedImage, decoded: Future[np.ndarray], stamp: int,
               key_stamp: int) -> CameraFrame:
        """One camera's decoded image with its intrinsics and its camera -> key-ego extrinsics."""
        try:
            image = decoded.result()
        except image_decode.ImageDecodeError as error:
            raise SetRejected(NodeCounter.DECODE_ERRORS, f"{camera}: {error}") from None
        info = self._camera_info.get(camera)
        if info is None:
            raise SetRejected(NodeCounter.CAMERA_INFO_MISSING, f"{camera}: no CameraInfo received yet")
        intrinsics = self._intrinsics(camera, info, image.shape[:2])
        frame_id = msg.header.frame_id or camera
        cam_to_ego = self._lookup(self.params.ego_frame, frame_id, stamp, target_stamp_ns=key_stamp)
        return CameraFrame(name=camera, image=image, intrinsics=intrinsics, cam_to_ego=cam_to_ego, stamp_ns=stamp)

    def _intrinsics(self, camera: str, info: CameraInfo, image_hw: tuple[int, int]) -> np.ndarray:
        """K of the decoded image: CameraInfo's K, rescaled when the image was resized by a uniform factor."""
        try:
            k, info_hw = camera_info_to_intrinsics(info)
        except ValueError as error:
            raise SetRejected(NodeCounter.CAMERA_INFO_INVALID, f"{camera}: {error}") from None
        if tuple(image_hw) == info_hw:
            return k
        sy, sx = image_hw[0] / info_hw[0], image_hw[1] / info_hw[1]
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise SetRejected(NodeCounter.IMAGE_SIZE_MISMATCH,
                              f"{camera}: image is {image_hw[1]}x{image_hw[0]} but its CameraInfo says "
                              f"{info_hw[1]}x{info_hw[0]} (not a uniform resize, so the intrinsics cannot be adapted)")
        self._count(NodeCounter.INTRINSICS_RESCALED)
        self.get_logger().warning(f"{camera}: image {image_hw[1]}x{image_hw[0]} differs from CameraInfo "
                                  f"{info_hw[1]}x{info_hw[0]}; intrinsics rescaled by {sx:.4f}",
                                  throttle_duration_sec=30.0)
        return np.diag([sx, sy, 1.0]) @ k

    def _lookup(self, target: str, source: str, stamp_ns: int, target_stamp_ns: int | None = None) -> np.ndarray:
        """4x4 transform target <- source; with target_stamp_ns, source at stamp_ns through the fixed frame.

        Waits up to tf_wait_s for tf to reach the stamps (tf often arrives after the images).
        """
        deadline = time.monotonic() + self.params.tf_wait_s
        source_time = rclpy.time.Time(nanoseconds=stamp_ns)
        while True:
            try:
                if target_stamp_ns is None:
                    transform = self.tf_buffer.lookup_transform(target, source, source_time)
                else:
                    transform = self.tf_buffer.lookup_transform_full(
                        target, rclpy.time.Time(nanoseconds=target_stamp_ns), source, source_time,
                        self.params.fixed_frame)
                return transform_to_matrix(transform)
            except tf.TransformException as error:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise SetRejected(NodeCounter.TF_FAILURES, f"tf {target} <- {source} at {stamp_ns / 1e9:.3f} s: "
                                                     f"{error}") from None
                time.sleep(0.01)
            except ValueError as error:  # NaN or otherwise invalid transform
                raise SetRejected(NodeCounter.TF_INVALID, f"tf {target} <- {source}: {error}") from None

    def _publish(self, result: StepResult, prepared: _PreparedSet) -> None:
        with self._publish_lock:
            if self._closed:  # a set abandoned at shutdown is not published
                self._count(NodeCounter.SETS_ABANDONED)
                return
            self._publish_locked(result, prepared)

    def _publish_locked(self, result: StepResult, prepared: _PreparedSet) -> None:
        """Publish the grid and markers of one step and record its timings (publish lock held)."""
        p = self.params
        if result.reset_reason:
            self._count(NodeCounter.CACHE_RESETS)
            self.get_logger().info(f"temporal cache reset: {result.reset_reason}")
        t0 = time.perf_counter()
        missing = [camera for camera in p.cameras if camera not in {f.name for f in prepared.frames}]
        source = self.runner.source + (f"; degraded, without {', '.join(missing)}" if missing else "")
        self.grid_pub.publish(grid_to_message(result.grid, p.ego_frame, source))
        t1 = time.perf_counter()
        if self.marker_pub.get_subscription_count() > 0:
            self.marker_pub.publish(build_markers_cdr(
                result.grid, p.ego_frame, lifetime_s=p.marker_lifetime_s, hidden_classes=p.marker_hidden_classes,
                camera_visible_only=p.marker_camera_visible_only, max_voxels=p.marker_max_voxels))
        t2 = time.perf_counter()
        if self.points_pub.get_subscription_count() > 0:
            self.points_pub.publish(point_cloud.build_point_cloud(result.grid, p.ego_frame))
        t3 = time.perf_counter()
        self._count(NodeCounter.GRIDS_OUT)
        self.stage_ms = {NodeStage.DECODE_AND_TF: prepared.prepare_ms, **result.timings_ms,
                         NodeStage.GRID_MESSAGE: (t1 - t0) * 1e3, NodeStage.MARKERS: (t2 - t1) * 1e3,
                         NodeStage.POINTS: (t3 - t2) * 1e3,
                         NodeStage.SET_WAIT: (time.monotonic() - prepared.received) * 1e3 - prepared.prepare_ms
                         - sum(result.timings_ms.values()) - (t3 - t0) * 1e3}
        now_ns = self.get_clock().now().nanoseconds
        self.latency_ms = (now_ns - result.grid.stamp_ns) / 1e6

    def _publish_diagnostics(self) -> None:
        """The node's status and one per camera; stale cameras make the node's status a degraded WARN."""
        with self._counter_lock:
            counters = dict(self.counters)
        counters.update({f"sync_{k}": v for k, v in self.sync.counters().items()})
        name, cameras = self.get_fully_qualified_name(), self.params.cameras
        array = build_diagnostics(self.get_clock().now().to_msg(), name, self.stage_ms, self.latency_ms, counters,
                                  str(self.runner.device), previous=self._reported)
        stale = self.sync.stale()
        array.status += camera_statuses(name, cameras, stale, [self.sync.lag_s(i) for i in range(len(cameras))],
                                        self.params.camera_timeout_s)
        if stale:
            mark_degraded(array.status[0], [cameras[i] for i in sorted(stale)])
        if stale != self._reported_stale:  # once per change, never per message
            self.get_logger().warning(f"cameras stale: {[cameras[i] for i in sorted(stale)] or 'none'} "
                                      f"(grids use {len(cameras) - len(stale)} of {len(cameras)} cameras)")
            self._reported_stale = stale
        self.diag_pub.publish(array)
        self._reported = counters

    def stop(self, grace_s: float) -> bool:
        """Stop taking sets and wait up to ``grace_s`` for the set in the network; False if it was abandoned (it
        then ends without publishing)."""
        self._stop.set()  # ends a tf wait in the prepare thread
        finished = self.prefetcher.stop(timeout=grace_s)
        self._decoders.shutdown(wait=False, cancel_futures=True)
        return finished

    def destroy_node(self) -> None:
        """Stop (waiting for the set in hand) if stop() was not called, then tear down; nothing publishes after."""
        if hasattr(self, "prefetcher"):  # not when start-up failed half-way (rclpy still destroys the node)
            if not self._stop.is_set():
                self.stop(grace_s=None)
            with self._publish_lock:  # a set abandoned by stop() finishes without publishing
                self._closed = True
        super().destroy_node()


STOP_GRACE_S = 1.0
"""How long a stopping node waits for the set in the network before abandoning it (stop within 2 s)."""

SPIN_WAKE_S = 0.1
"""The executor wakes at least this often, so that a signal is handled even when no callback is due (sim time
without /clock stops every timer)."""


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM end the spin as Ctrl-C does."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None, prog: str = "gsdocc_node") -> int:
    """Run the node until SIGINT or SIGTERM; a bad command line, parameter or checkpoint stops start-up in one line.

    rclpy's own signal handler would shut the context down under the inference thread's feet, so signals are
    handled here: they end the spin (which wakes every SPIN_WAKE_S), the set in the network gets STOP_GRACE_S to
    finish, and only then does the context close. A set still running after that is abandoned: it publishes
    nothing, and the process exits without waiting for it.
    """
    argv = list(sys.argv if argv is None else argv)
    problem = command_line_problem(argv[1:], prog)
    if problem is not None:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background with SIGINT ignored
        signal.signal(signum, _interrupt)
    finished = True
    with rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO):
        try:
            node = OccupancyNode()
        except (ValueError, FileNotFoundError, RuntimeError, ParameterException) as error:
            rclpy.logging.get_logger("gsdocc").fatal(f"start-up failed: {error}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while True:
                executor.spin_once(timeout_sec=SPIN_WAKE_S)
        except (KeyboardInterrupt, ExternalShutdownException) as reason:
            node.get_logger().info(f"stopping ({reason or type(reason).__name__}): waiting up to {STOP_GRACE_S} s "
                                   "for the camera set in hand")
            finished = node.stop(grace_s=STOP_GRACE_S)
            if not finished:
                node.get_logger().warning("stopping: the camera set in the network is abandoned (not published)")
        finally:
            executor.shutdown(timeout_sec=0.0)
            node.destroy_node()
    if not finished:  # the inference thread is still inside a forward: leave without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
