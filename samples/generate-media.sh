#!/usr/bin/env bash
# Regenerates the tiny sample media in samples/media/ (committed; run again only to change it).
#
# Content: a 24 s loop (testsrc + beeping tone) in a 3-rung ladder, packaged as
#   - MPEG-TS with muxed audio, 2 s and 6 s segments      (content/{2s,6s}/ts/v{0,1,2}/)
#   - CMAF fMP4, demuxed video and audio, 2 s and 6 s      (content/{2s,6s}/cmaf/{v0,v1,v2,a0}/)
# Ads: 10 s, 15 s and 30 s creatives with 2 s segments, and a slate with 1 s segments, encoded in
# the same ladder and packaged the same two ways (ads/<name>/{ts,cmaf}/...).
#
# Audio is trimmed to whole AAC frames (1024 samples, one of them encoder priming) so that it never
# outlasts the video and the 24 s loop is exactly 1125 frames: the looped timeline does not drift.
# Every video stream is 10 fps with a closed GOP exactly as long as the segment grid (2 s, or 1 s
# for the slate), so segment boundaries are exact and identical across the ladder.
# Requires: ffmpeg with libx264 and drawtext (Debian: apt-get install ffmpeg fonts-dejavu-core).
set -euo pipefail
cd "$(dirname "$0")"
out=media
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$out"

font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
FPS=10
# name width height video-kbps
LADDER=("v0 192 108 40" "v1 320 180 80" "v2 480 270 140")

label() { # text -> drawtext filter (or nothing when no font is installed)
  if [[ -f $font ]]; then
    echo ",drawtext=fontfile=$font:text='$1':x=4:y=4:fontsize=h/8:fontcolor=white:box=1:boxcolor=black@0.6"
  fi
}

# encode NAME SECONDS GOP_SECONDS VIDEO_SRC AUDIO_SRC TEXT -> $tmp/NAME_vN.mp4 (video+audio)
encode() {
  local name=$1 secs=$2 gop=$3 vsrc=$4 asrc=$5 text=$6
  for rung in "${LADDER[@]}"; do
    read -r v w h kbps <<<"$rung"
    ffmpeg -hide_banner -loglevel error -y \
      -f lavfi -i "$vsrc:size=${w}x${h}:rate=$FPS:duration=$secs" \
      -f lavfi -i "$asrc" \
      -vf "format=yuv420p$(label "$text")" -af "atrim=end_sample=$(( secs * 48000 / 1024 * 1024 - 1024 ))" \
      -c:v libx264 -preset veryfast -profile:v main -b:v "${kbps}k" -maxrate "${kbps}k" \
      -bufsize "$((kbps * 2))k" -g $((FPS * gop)) -keyint_min $((FPS * gop)) -sc_threshold 0 \
      -x264-params "open-gop=0" \
      -c:a aac -b:a 32k -ar 48000 -ac 1 -t "$secs" \
      -movflags +faststart "$tmp/${name}_$v.mp4"
  done
}

# package SRC_PREFIX DEST SEG_SECONDS: TS (muxed) and CMAF (demuxed) renditions
package() {
  local src=$1 dest=$2 seg=$3
  for rung in "${LADDER[@]}"; do
    read -r v _ <<<"$rung"
    mkdir -p "$dest/ts/$v" "$dest/cmaf/$v"
    ffmpeg -hide_banner -loglevel error -y -i "${src}_$v.mp4" -c copy -map 0 \
      -f hls -hls_time "$seg" -hls_playlist_type vod -hls_flags independent_segments \
      -hls_segment_filename "$dest/ts/$v/seg_%03d.ts" "$dest/ts/$v/index.m3u8"
    ffmpeg -hide_banner -loglevel error -y -i "${src}_$v.mp4" -c copy -map 0:v \
      -f hls -hls_time "$seg" -hls_playlist_type vod -hls_segment_type fmp4 \
      -hls_fmp4_init_filename init.mp4 \
      -hls_segment_filename "$dest/cmaf/$v/seg_%03d.m4s" "$dest/cmaf/$v/index.m3u8"
  done
  mkdir -p "$dest/cmaf/a0"
  ffmpeg -hide_banner -loglevel error -y -i "${src}_v0.mp4" -c copy -map 0:a \
    -f hls -hls_time "$seg" -hls_playlist_type vod -hls_segment_type fmp4 \
    -hls_fmp4_init_filename init.mp4 \
    -hls_segment_filename "$dest/cmaf/a0/seg_%03d.m4s" "$dest/cmaf/a0/index.m3u8"
}

encode content 24 2 "testsrc=decimals=1" "sine=frequency=440:beep_factor=4:sample_rate=48000" "LIVE"
for seg in 2 6; do package "$tmp/content" "$out/content/${seg}s" "$seg"; done

encode ad10 10 2 "smptebars=sar=1" "sine=frequency=880:sample_rate=48000" "AD 10s"
encode ad15 15 2 "rgbtestsrc=sar=1" "sine=frequency=660:sample_rate=48000" "AD 15s"
encode ad30 30 2 "testsrc2=sar=1" "sine=frequency=330:sample_rate=48000" "AD 30s"
encode slate 10 1 "color=c=0x203040" "anullsrc=r=48000:cl=mono" "BACK SOON"
for ad in ad10 ad15 ad30; do package "$tmp/$ad" "$out/ads/$ad" 2; done
package "$tmp/slate" "$out/ads/slate" 1

du -sh "$out"
find "$out" -type f | wc -l
