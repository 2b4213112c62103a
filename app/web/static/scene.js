// The session's scene as binary glTF (GET scene.glb), in three.js.
import { api } from "./common.js";

let viewer = null;

export async function showScene(base) {
  const blob = await api("GET", base + "/scene.glb");
  const THREE = await import("three");
  const { GLTFLoader } = await import("three/addons/loaders/GLTFLoader.js");
  const { OrbitControls } = await import("three/addons/controls/OrbitControls.js");
  const box = document.getElementById("scene");
  if (!viewer) viewer = makeViewer(THREE, OrbitControls, box);
  const gltf = await new GLTFLoader().parseAsync(await blob.arrayBuffer(), "");
  if (viewer.model) viewer.scene.remove(viewer.model);
  viewer.model = gltf.scene;
  viewer.scene.add(gltf.scene);
  const bounds = new THREE.Box3().setFromObject(gltf.scene);
  const size = bounds.getSize(new THREE.Vector3()).length() || 1;
  const center = bounds.getCenter(new THREE.Vector3());
  viewer.controls.target.copy(center);
  viewer.camera.position.copy(center).add(new THREE.Vector3(0, 0, size * 1.2));
  viewer.camera.near = size / 100;
  viewer.camera.far = size * 10;
  viewer.camera.updateProjectionMatrix();
  box.dataset.meshes = String(countMeshes(gltf.scene));     // a hook for tests
}

function countMeshes(object) {
  let count = 0;
  object.traverse((node) => { if (node.isMesh) count += 1; });
  return count;
}

function makeViewer(THREE, OrbitControls, box) {
  const width = box.clientWidth || 640;
  const height = Math.round(width * 0.75);
  const renderer = new THREE.WebGLRenderer({ antialias: true });
  renderer.setSize(width, height);
  box.replaceChildren(renderer.domElement);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x000000);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 2));
  const light = new THREE.DirectionalLight(0xffffff, 2);
  light.position.set(1, 1, 1);
  scene.add(light);
  const camera = new THREE.PerspectiveCamera(30, width / height, 0.1, 1000);
  const controls = new OrbitControls(camera, renderer.domElement);
  renderer.setAnimationLoop(() => {
    controls.update();
    renderer.render(scene, camera);
  });
  return { scene, camera, controls, model: null };
}
